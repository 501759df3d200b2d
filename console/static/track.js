/*! Community Console tracking snippet: no dependencies, no cookies.
 *
 * <script src="https://CONSOLE/static/track.js" data-ingest-key="KEY"></script>
 * <script>ConsoleTrack.identify("USER_ID", {email: "...", name: "..."});</script>
 *
 * ConsoleTrack.track(event, {feature, properties}), .identify(userId, traits), .page(), .flush(), .reset().
 * Options as data attributes on the script tag: data-api (default: where this file came from),
 * data-page-views="off", data-flush-ms (default 3000), data-batch-size (default and at most 1000).
 *
 * Events wait in localStorage until the console acknowledges them, so a reload or a crash loses nothing;
 * every event has its own event_id, so whatever is sent twice (a retry, a beacon, two tabs) is stored once.
 * Events tracked before the first identify wait for it; the user id is remembered until reset().
 */
(function (window, document) {
  "use strict";
  if (window.ConsoleTrack && window.ConsoleTrack.version) return;

  var script = document.currentScript || {};
  var data = script.dataset || {};
  var API = (data.api || (script.src ? new URL(script.src, location.href).origin : location.origin)).replace(/\/$/, "");
  var ENDPOINT = API + "/api/phase14/engagement/track-activity";
  var KEY = data.ingestKey || "";
  var BATCH = Math.min(parseInt(data.batchSize, 10) || 1000, 1000);
  var FLUSH_MS = parseInt(data.flushMs, 10) || 3000;
  var SESSION_IDLE_MS = 30 * 60 * 1000;
  var MAX_QUEUE = 10000; // beyond this the oldest events are dropped rather than filling the storage
  var BEACON_GRACE_MS = 10000; // a beaconed event is sent again only if it is still unacknowledged by then
  var BEACON_BYTES = 60000; // browsers cap pending beacons at 64 KiB
  var PREFIX = "consoleTrack:";

  var memory = {};
  var storage = {
    get: function (name, fallback) {
      try {
        var raw = window.localStorage.getItem(PREFIX + name);
        return raw === null ? fallback : JSON.parse(raw);
      } catch (e) {
        return name in memory ? memory[name] : fallback;
      }
    },
    set: function (name, value) {
      memory[name] = value;
      try { window.localStorage.setItem(PREFIX + name, JSON.stringify(value)); } catch (e) { /* memory only */ }
    }
  };

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 15) | 64;
    bytes[8] = (bytes[8] & 63) | 128;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  // The queue is read and written in one go for every change, never kept in memory, so tabs share it safely.
  function update(change) {
    var queue = storage.get("queue", []);
    var out = change(queue) || queue;
    if (out.length > MAX_QUEUE) out = out.slice(out.length - MAX_QUEUE);
    storage.set("queue", out);
    return out;
  }

  function sessionId() {
    var now = Date.now();
    var session = storage.get("session", null);
    if (!session || now - session.last > SESSION_IDLE_MS) session = {id: uuid(), last: now};
    session.last = now;
    storage.set("session", session);
    return session.id;
  }

  function track(event, options) {
    options = options || {};
    if (!event) return null;
    var user = storage.get("user", null);
    var item = {event_id: uuid(), event: String(event), timestamp: new Date().toISOString(), session_id: sessionId()};
    if (user) item.user_id = user.id;
    if (options.feature) item.feature = String(options.feature);
    if (options.properties) item.properties = options.properties;
    if (user && user.pending) {
      item.traits = user.pending; // an identify rides on the next event
      delete user.pending;
      storage.set("user", user);
    }
    var queue = update(function (q) { q.push(item); });
    if (queue.length >= BATCH) flush(); else schedule(FLUSH_MS);
    return item.event_id;
  }

  function identify(userId, traits) {
    if (userId === undefined || userId === null || userId === "") return;
    var id = String(userId);
    var user = storage.get("user", null) || {};
    var known = user.id === id ? user.traits : null;
    var next = {id: id, traits: traits || known || null, pending: user.id === id ? user.pending : null};
    if (traits && JSON.stringify(traits) !== JSON.stringify(known)) next.pending = traits;
    update(function (q) {
      q.forEach(function (item) { if (!item.user_id) item.user_id = id; });
      for (var i = q.length - 1; next.pending && i >= 0; i--) {
        if (q[i].user_id === id && !q[i].beaconed && !q[i].traits) { q[i].traits = next.pending; next.pending = null; }
      }
    });
    storage.set("user", next);
    schedule(0);
  }

  function reset() {
    storage.set("user", null);
    storage.set("session", null);
  }

  function page() {
    return track("page_view", {properties: {path: location.pathname, title: document.title, referrer: document.referrer || null}});
  }

  // --- sending ----------------------------------------------------------------------------------------------
  var timer = null, inFlight = false, failures = 0, pausedUntil = 0;

  function schedule(ms) {
    if (timer) return;
    timer = setTimeout(function () { timer = null; flush(); }, Math.max(ms, pausedUntil - Date.now(), 0));
  }

  function strip(item) {
    var out = {};
    for (var name in item) if (name !== "beaconed") out[name] = item[name];
    return out;
  }

  function sendable(now) {
    return storage.get("queue", []).filter(function (item) {
      return item.user_id && !(item.beaconed && now - item.beaconed < BEACON_GRACE_MS);
    });
  }

  function forget(ids) {
    update(function (q) { return q.filter(function (item) { return !ids[item.event_id]; }); });
  }

  function retryLater(retryAfter) {
    failures += 1;
    var backoff = Math.min(60000, 1000 * Math.pow(2, failures - 1)) * (0.5 + Math.random() / 2);
    pausedUntil = Date.now() + Math.max(backoff, (parseFloat(retryAfter) || 0) * 1000);
    schedule(0);
  }

  // What is left: send it now, or when the grace of the earliest beaconed event is over.
  function followUp(now) {
    if (sendable(now).length) return schedule(0);
    var due = storage.get("queue", []).filter(function (item) { return item.user_id && item.beaconed; })
      .map(function (item) { return item.beaconed + BEACON_GRACE_MS - now; });
    if (due.length) schedule(Math.max(0, Math.min.apply(Math, due)) + 50);
  }

  function flush() {
    if (inFlight || !KEY || !window.fetch) return;
    var now = Date.now();
    if (now < pausedUntil) return schedule(0);
    var batch = sendable(now).slice(0, BATCH);
    if (!batch.length) return followUp(now);
    inFlight = true;
    var ids = {};
    batch.forEach(function (item) { ids[item.event_id] = true; });
    fetch(ENDPOINT, {
      method: "POST", mode: "cors", credentials: "omit",
      headers: {"Content-Type": "application/json", "X-Ingest-Key": KEY},
      body: JSON.stringify({events: batch.map(strip)})
    }).then(function (response) {
      inFlight = false;
      if (response.status === 429 || response.status >= 500) return retryLater(response.headers.get("Retry-After"));
      if (response.status === 401 || response.status === 403) {
        warn("the console refused the ingest key or this origin (" + response.status + "); events are kept");
        pausedUntil = Date.now() + 60000;
        return schedule(0);
      }
      failures = 0;
      if (response.status !== 202) warn("the console answered " + response.status + "; " + batch.length + " events dropped");
      forget(ids); // accepted, duplicates and events the console rejected as invalid are all done with
      followUp(Date.now());
    }, function () {
      inFlight = false;
      retryLater(0);
    });
  }

  // On page hide there is no time for fetch: hand what is left to the browser, which sends it after the page is
  // gone. The key rides in the query because a beacon cannot set headers; the body is text/plain JSON so no
  // preflight is needed. The events stay queued until acknowledged, so a beacon that never arrives costs nothing.
  function beacon() {
    if (!KEY || !navigator.sendBeacon) return;
    var now = Date.now();
    var pending = sendable(now);
    var sent = {};
    var url = ENDPOINT + "?ingest_key=" + encodeURIComponent(KEY);
    while (pending.length) {
      var chunk = [];
      var body = "";
      while (pending.length && chunk.length < BATCH) {
        var attempt = JSON.stringify({events: chunk.concat([strip(pending[0])])});
        if (attempt.length > BEACON_BYTES && chunk.length) break;
        chunk.push(strip(pending.shift()));
        body = attempt;
      }
      if (!navigator.sendBeacon(url, body)) break;
      chunk.forEach(function (item) { sent[item.event_id] = true; });
    }
    update(function (q) { q.forEach(function (item) { if (sent[item.event_id]) item.beaconed = now; }); });
  }

  function warn(message) {
    if (window.console && console.warn) console.warn("ConsoleTrack: " + message);
  }

  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") beacon(); });
  window.addEventListener("pagehide", beacon);
  window.addEventListener("online", function () { failures = 0; pausedUntil = 0; schedule(0); });

  if (!KEY) warn("no data-ingest-key on the script tag; events are kept but not sent");

  window.ConsoleTrack = {version: 1, track: track, identify: identify, page: page, flush: flush, reset: reset};

  if (data.pageViews !== "off") {
    page();
    var push = history.pushState;
    history.pushState = function () { var out = push.apply(this, arguments); page(); return out; };
    window.addEventListener("popstate", page);
  }
  schedule(0); // whatever an earlier page left unsent
})(window, document);
