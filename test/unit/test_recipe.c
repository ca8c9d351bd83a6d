/* Image recipes (sandbox/recipe.c): a good recipe becomes derived.sh's steps in their fixed
 * order with the sentence the LLM reads; every word that could reach the root build script as
 * something else (an option, shell syntax, a path out of the recipe's folder, a destination each
 * VM mounts over) is refused with the line it is on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "recipe.h"

static int parse(struct recipe *r, const char *text, char *err, size_t err_len)
{
	return recipe_parse(r, text, strlen(text), "/recipes", 0, err, err_len);
}

/* Whether text is refused with a message that holds want. */
static int refused(const char *text, const char *want)
{
	struct recipe r;
	char err[512] = "";
	int rc = parse(&r, text, err, sizeof err);
	recipe_free(&r);
	if (rc == 0 || !strstr(err, want))
		fprintf(stderr, "recipe \"%s\": rc %d, message \"%s\", wanted \"%s\"\n", text, rc,
			err, want);
	return rc != 0 && strstr(err, want) != NULL;
}

static void a_recipe_becomes_steps_in_a_fixed_order(void)
{
	struct recipe r;
	char err[512] = "";
	int rc = parse(&r,
		       "# data tools\n"
		       "copy data/table.csv /opt/data/table.csv   # last, whatever the order\n"
		       "npm is-number@7.0.0 ./local-1.0.0.tgz\n"
		       "name science\n"
		       "pip tabulate==0.9.0\n"
		       "pip-wheels wheels\n"
		       "apt jq\tfiglet=2.2.5-3\r\n"
		       "apt  sl\n",
		       err, sizeof err);
	CHECK(rc == 0);
	CHECK(strcmp(r.name, "science") == 0);
	CHECK(r.n_steps == 4);
	if (r.n_steps == 4) {
		CHECK(strcmp(r.steps[0], "apt jq figlet=2.2.5-3 sl") == 0);
		CHECK(strcmp(r.steps[1], "pip wheels wheels tabulate==0.9.0") == 0);
		CHECK(strcmp(r.steps[2], "npm - is-number@7.0.0 ./local-1.0.0.tgz") == 0);
		CHECK(strcmp(r.steps[3], "copy data/table.csv /opt/data/table.csv") == 0);
	}
	/* what the image's key reads besides the steps: the local files */
	CHECK(r.n_sources == 3);
	if (r.n_sources == 3) {
		CHECK(strcmp(r.sources[0], "data/table.csv") == 0);
		CHECK(strcmp(r.sources[1], "local-1.0.0.tgz") == 0);
		CHECK(strcmp(r.sources[2], "wheels") == 0);
	}
	CHECK(strcmp(r.contents, "Debian packages: jq figlet=2.2.5-3 sl; Python packages: "
				 "tabulate==0.9.0; npm packages: is-number@7.0.0 ./local-1.0.0.tgz; "
				 "files: /opt/data/table.csv") == 0);
	recipe_free(&r);
}

static void sources_and_registries_are_named(void)
{
	struct recipe r;
	char err[512] = "";
	CHECK(parse(&r,
		    "name x\npip-index https://pypi.example/simple\npip six\n"
		    "npm-registry http://127.0.0.1:4873/\nnpm @scope/pkg@^1.2\n",
		    err, sizeof err) == 0);
	CHECK(r.n_steps == 2);
	if (r.n_steps == 2) {
		CHECK(strcmp(r.steps[0], "pip index https://pypi.example/simple six") == 0);
		CHECK(strcmp(r.steps[1], "npm http://127.0.0.1:4873/ @scope/pkg@^1.2") == 0);
	}
	recipe_free(&r);
}

static void what_a_recipe_must_say(void)
{
	CHECK(refused("apt jq\n", "no name line"));
	CHECK(refused("name x\n# nothing\n", "adds nothing"));
	CHECK(refused("name x\nname y\napt jq\n", "line 2: a second name"));
	CHECK(refused("name X\napt jq\n", "line 1: name takes one word"));
	CHECK(refused("name a b\napt jq\n", "line 1: name takes one word"));
	CHECK(refused("name 0x\napt jq\n", "name takes one word"));
	CHECK(refused("name x\npip six\n", "line 2: pip needs exactly one source"));
	CHECK(refused("name x\npip six\npip-wheels w\npip-index https://h/s\n",
		      "pip needs exactly one source"));
	CHECK(refused("name x\napt jq\npip-wheels w\n", "line 3: a pip source without pip"));
	CHECK(refused("name x\napt\n", "line 2: apt needs at least one package"));
	CHECK(refused("name x\nyum jq\n", "line 2: unknown directive 'yum'"));
}

static void words_that_could_become_something_else_are_refused(void)
{
	/* options for apt, pip and npm */
	CHECK(refused("name x\napt --allow-unauthenticated\n", "not a Debian package name"));
	CHECK(refused("name x\npip-wheels w\npip --index-url=http://evil/\n",
		      "not a pip requirement"));
	CHECK(refused("name x\nnpm --registry=http://evil/\n", "not a npm package spec"));
	/* shell syntax */
	CHECK(refused("name x\napt jq;reboot\n", "not a Debian package name"));
	CHECK(refused("name x\napt 'jq'\n", "not a Debian package name"));
	CHECK(refused("name x\npip-wheels w\npip six$(id)\n", "not a pip requirement"));
	CHECK(refused("name x\nnpm a`id`\n", "not a npm package spec"));
	CHECK(refused("name x\npip-index https://h/$(id)\npip six\n", "URL"));
	CHECK(refused("name x\nnpm-registry ftp://h/\nnpm a\n", "URL"));
	/* paths out of the recipe's folder */
	CHECK(refused("name x\ncopy ../secret /opt/s\n", "beside the recipe"));
	CHECK(refused("name x\ncopy a/../../secret /opt/s\n", "beside the recipe"));
	CHECK(refused("name x\ncopy /etc/shadow /opt/s\n", "beside the recipe"));
	CHECK(refused("name x\nnpm ./../x.tgz\n", "not a npm package spec"));
	CHECK(refused("name x\npip-wheels ../w\npip six\n", "pip-wheels takes one folder"));
	/* destinations each VM mounts over, or outside the tree */
	CHECK(refused("name x\ncopy a /work/a\n", "outside /proc"));
	CHECK(refused("name x\ncopy a /tmp\n", "outside /proc"));
	CHECK(refused("name x\ncopy a /opt/../etc/a\n", "absolute path"));
	CHECK(refused("name x\ncopy a opt/a\n", "absolute path"));
	CHECK(refused("name x\ncopy a /\n", "absolute path"));
	CHECK(refused("name x\ncopy a\n", "copy takes"));
}

static void limits_hold(void)
{
	char *big = malloc(RECIPE_MAX_BYTES + 2);
	memset(big, '#', RECIPE_MAX_BYTES + 1);
	big[RECIPE_MAX_BYTES + 1] = '\0';
	CHECK(refused(big, "over"));
	memset(big, 'a', 2000);
	memcpy(big, "name x\napt ", 11);
	big[2000] = '\0';
	CHECK(refused(big, "line 2: longer than"));
	free(big);
	struct recipe r;
	char err[64] = "";
	CHECK(recipe_parse(&r, "name x\n\0apt jq\n", 15, "/", 0, err, sizeof err) != 0);
	CHECK(strstr(err, "NUL") != NULL);
	recipe_free(&r);
	/* 65 copies: over the steps' limit */
	char text[8192] = "name x\n";
	for (int i = 0; i < RECIPE_MAX_STEPS + 1; i++)
		snprintf(text + strlen(text), sizeof text - strlen(text), "copy f%d /opt/f%d\n", i,
			 i);
	CHECK(refused(text, "more than"));
}

/* A local source that is not there, or is a link, is refused when sources are checked. */
static void local_sources_must_be_there(void)
{
	char dir[] = "/tmp/airlock-recipe-test-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256], err[512] = "";
	snprintf(path, sizeof path, "%s/recipe", dir);
	FILE *f = fopen(path, "w");
	fputs("name x\ncopy data /opt/data\n", f);
	fclose(f);
	struct recipe r;
	CHECK(recipe_read(&r, path, err, sizeof err) != 0);
	CHECK(strstr(err, "line 2") && strstr(err, "No such file"));
	snprintf(path, sizeof path, "%s/data", dir);
	CHECK(symlink("/etc/shadow", path) == 0);
	snprintf(path, sizeof path, "%s/recipe", dir);
	CHECK(recipe_read(&r, path, err, sizeof err) != 0);
	CHECK(strstr(err, "symbolic link") != NULL);
	snprintf(path, sizeof path, "%s/data", dir);
	unlink(path);
	CHECK(mkdir(path, 0755) == 0);
	snprintf(path, sizeof path, "%s/recipe", dir);
	CHECK(recipe_read(&r, path, err, sizeof err) == 0);
	CHECK(strcmp(r.dir, dir) == 0);
	recipe_free(&r);
	snprintf(path, sizeof path, "%s/data", dir);
	rmdir(path);
	snprintf(path, sizeof path, "%s/recipe", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	TEST(a_recipe_becomes_steps_in_a_fixed_order);
	TEST(sources_and_registries_are_named);
	TEST(what_a_recipe_must_say);
	TEST(words_that_could_become_something_else_are_refused);
	TEST(limits_hold);
	TEST(local_sources_must_be_there);
	return TEST_EXIT_STATUS();
}
