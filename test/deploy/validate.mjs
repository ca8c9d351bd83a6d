// Checks Kubernetes manifests offline: every document of every YAML file named (or found in a
// directory named) on the command line. Three checks per document, each an error:
//  - YAML that does not parse;
//  - the API's JSON schema for its apiVersion and kind (kubernetes-models: types, required
//    fields, enums, formats), and a kind that schema set does not know;
//  - fields the API does not have (the schemas allow them; the API server's strict field
//    validation, kubectl's default, refuses them): walked with the model tables of the official
//    client, @kubernetes/client-node.
// Prints one line per document and one per error; exits 1 on any error, 2 on bad usage.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import * as k8s from "@kubernetes/client-node";

function yamlFiles(paths) {
  const out = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      for (const name of readdirSync(p).sort())
        if (/\.ya?ml$/.test(name)) out.push(join(p, name));
    } else {
      out.push(p);
    }
  }
  return out;
}

// "apps/v1" -> module "kubernetes-models/apps/v1"; "v1" -> "kubernetes-models/v1"
async function schemaClass(apiVersion, kind) {
  let mod;
  try {
    mod = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    return null;
  }
  return mod[kind] ?? null;
}

// The client's model name: "apps/v1" Deployment -> V1Deployment; "autoscaling/v2" -> V2...
function modelName(apiVersion, kind) {
  const version = apiVersion.split("/").pop();
  return version.charAt(0).toUpperCase() + version.slice(1) + kind;
}

// Fields of value that the model `type` does not have, as paths.
function unknownFields(value, type, path, errors) {
  if (value === null || value === undefined) return;
  let m = /^Array<(.+)>$/.exec(type);
  if (m) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, m[1], `${path}[${i}]`, errors));
    return;
  }
  m = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (m) {
    if (typeof value === "object")
      for (const [key, v] of Object.entries(value)) unknownFields(v, m[1], `${path}.${key}`, errors);
    return;
  }
  const model = k8s[type];
  if (typeof model?.getAttributeTypeMap !== "function" || typeof value !== "object") return;
  const attributes = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [key, v] of Object.entries(value)) {
    if (!attributes.has(key)) errors.push(`${path}.${key}: unknown field (${type} has no "${key}")`);
    else unknownFields(v, attributes.get(key), `${path}.${key}`, errors);
  }
}

async function checkDocument(obj) {
  const errors = [];
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    return ["not a Kubernetes object (a mapping with apiVersion and kind)"];
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string")
    return ["no apiVersion or kind"];
  const Cls = await schemaClass(apiVersion, kind);
  if (!Cls) return [`unknown apiVersion/kind ${apiVersion} ${kind}`];
  try {
    new Cls(obj).validate();
  } catch (e) {
    const list = e.errors ?? [{ instancePath: "", message: e.message }];
    for (const err of list)
      errors.push(`${err.instancePath || "/"}: ${err.message}${err.params ? " " + JSON.stringify(err.params) : ""}`);
  }
  const model = modelName(apiVersion, kind);
  if (typeof k8s[model]?.getAttributeTypeMap === "function") unknownFields(obj, model, "", errors);
  else errors.push(`no field table for ${model}: unknown fields not checked`);
  return errors;
}

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error("usage: node validate.mjs FILE|DIR...");
  process.exit(2);
}
let failed = 0;
let documents = 0;
for (const file of yamlFiles(paths)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  let index = 0;
  for (const doc of docs) {
    index++;
    if (doc.errors.length) {
      documents++;
      failed++;
      console.log(`FAIL ${file} #${index}: YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue; // an empty document (a trailing ---)
    documents++;
    const name = `${obj.kind ?? "?"}/${obj.metadata?.name ?? "?"}`;
    const errors = await checkDocument(obj);
    if (errors.length) {
      failed++;
      console.log(`FAIL ${file} #${index} ${name}`);
      for (const e of errors) console.log(`     ${e}`);
    } else {
      console.log(`ok   ${file} #${index} ${name} (${obj.apiVersion})`);
    }
  }
}
console.log(`${documents - failed} valid, ${failed} invalid`);
process.exit(failed || documents === 0 ? 1 : 0);
