// Sends a Node program's HTTP through the agent's proxy with no change to its code: loaded into
// every node process by NODE_OPTIONS=--require /usr/lib/airlock/node-proxy.js. Debian's packages
// speak the proxy protocol; this file only chooses, per request, from HTTP(S)_PROXY and NO_PROXY
// (proxy-from-env): fetch through undici's ProxyAgent, the http and https modules' default agents
// through http-proxy-agent (absolute URIs) and https-proxy-agent (CONNECT).
//
// With no proxy variable set it does nothing. It never prints, and never throws into the program:
// whatever fails here leaves Node's own behaviour. npm reads the proxy variables itself and
// hands its own agents to each request, so the default agents replaced here are not its own.
'use strict';

(function () {
  const env = process.env;
  const names = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'ALL_PROXY', 'all_proxy'];
  if (!names.some((n) => env[n])) return;

  // Absolute paths: a package of the same name that the program installs (NODE_PATH) must not
  // stand in for Debian's here.
  const lib = '/usr/share/nodejs/';
  let proxyFor;
  try {
    proxyFor = require(lib + 'proxy-from-env').getProxyForUrl;
  } catch (e) {
    return;
  }

  function urlFor(secure, host, port) {
    if (host.includes(':') && !host.startsWith('[')) host = '[' + host + ']';
    return (secure ? 'https://' : 'http://') + host + ':' + port + '/';
  }

  // fetch: undici's global dispatcher (shared by Node's own fetch and the undici package through
  // a well-known symbol), built on first use so that a program that never fetches never loads it.
  const dispatcherKey = Symbol.for('undici.globalDispatcher.1');
  const setDispatcher = (value) => Object.defineProperty(globalThis, dispatcherKey, {
    value, writable: true, enumerable: false, configurable: false, // as undici's own setter
  });
  let building = false;
  function buildDispatcher() {
    // undici's lib/ files, not its index: the index (which a program's require('undici') also
    // loads) installs a dispatcher of its own when it finds none, asking us while we build. The
    // one thing the index adds to them, the request methods (ProxyAgent tunnels with connect()),
    // is added here the same way (undici 5.15, bookworm's node-undici).
    const Agent = require(lib + 'undici/lib/agent');
    const ProxyAgent = require(lib + 'undici/lib/proxy-agent');
    const Dispatcher = require(lib + 'undici/lib/dispatcher');
    Object.assign(Dispatcher.prototype, require(lib + 'undici/lib/api'));
    const direct = new Agent();
    const proxies = new Map();
    class ProxyFromEnv extends Dispatcher {
      dispatch(opts, handler) {
        const proxy = proxyFor(new URL(opts.path, opts.origin).href);
        if (!proxy) return direct.dispatch(opts, handler);
        if (!proxies.has(proxy)) proxies.set(proxy, new ProxyAgent(proxy));
        return proxies.get(proxy).dispatch(opts, handler);
      }

      close() {
        return Promise.all([direct, ...proxies.values()].map((d) => d.close()));
      }

      destroy(err) {
        return Promise.all([direct, ...proxies.values()].map((d) => d.destroy(err)));
      }
    }
    return new ProxyFromEnv();
  }
  function getDispatcher() {
    // Should loading undici still ask for the global dispatcher while we build, it finds none.
    if (building) return undefined;
    building = true;
    let dispatcher;
    try {
      dispatcher = buildDispatcher();
    } catch (e) {
      dispatcher = undefined;
    }
    building = false;
    const now = Object.getOwnPropertyDescriptor(globalThis, dispatcherKey);
    if (dispatcher !== undefined || (now && now.get === getDispatcher)) setDispatcher(dispatcher);
    return globalThis[dispatcherKey];
  }
  try {
    if (globalThis[dispatcherKey] === undefined) {
      Object.defineProperty(globalThis, dispatcherKey, {
        configurable: true, enumerable: false, get: getDispatcher, set: setDispatcher,
      });
    }
  } catch (e) {
    // leave fetch alone
  }

  // http and https: each module's default agent asks, per request, whether to go through a
  // proxy; a request with an agent of its own keeps it. The proxy agents load on the first
  // request, so that a program that makes none pays nothing for them.
  try {
    const http = require('http');
    const https = require('https');

    function buildRouter(secure, direct) {
      const AgentBase = require(lib + 'agent-base');
      const ProxyAgent = secure ? require(lib + 'https-proxy-agent').HttpsProxyAgent
        : require(lib + 'http-proxy-agent').HttpProxyAgent;
      const proxies = new Map();
      const router = new AgentBase.Agent((req, opts) => {
        opts.secureEndpoint = secure;
        const proxy = proxyFor(urlFor(secure, String(opts.host), opts.port));
        if (!proxy) return direct;
        if (!proxies.has(proxy)) proxies.set(proxy, new ProxyAgent(proxy));
        return proxies.get(proxy);
      });
      router.protocol = secure ? 'https:' : 'http:';
      router.defaultPort = secure ? 443 : 80;
      return router;
    }

    // An Agent, so that a program that reads or sets the default agent's options still can.
    function lazyAgent(mod, secure) {
      const direct = mod.globalAgent;
      const agent = new mod.Agent(direct.options);
      let router;
      agent.addRequest = function (req, opts) {
        if (opts.socketPath) return direct.addRequest(req, opts); // a Unix socket: no proxy
        if (router === undefined) {
          try {
            router = buildRouter(secure, direct);
          } catch (e) {
            router = direct;
          }
        }
        return router.addRequest(req, opts);
      };
      return agent;
    }

    const httpAgent = lazyAgent(http, false);
    const httpsAgent = lazyAgent(https, true);
    // http.request() reads _http_agent's globalAgent, which http.globalAgent's setter changes
    // (Node >= 18.16); https.request() reads https.globalAgent.
    http.globalAgent = httpAgent;
    https.globalAgent = httpsAgent;
    const internal = require('_http_agent');
    if (internal.globalAgent !== httpAgent) internal.globalAgent = httpAgent;
  } catch (e) {
    // leave the http and https modules alone
  }
})();
