// walletd demo page: one EventSource per run, events as in SPEC §1, errors as in §2.
// Plain script, no build step; every value from the server reaches the page as text
// (textContent), never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "walletd.apiKey";
  const RUNNING = new Set(["connecting", "streaming", "reconnecting"]);
  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const rowsBody = document.querySelector("#trades tbody");

  let run = null; // the current stream and its tallies; replaced by every Start

  function init() {
    $("api-key").value = storedKey();
    $("controls").addEventListener("submit", (event) => {
      event.preventDefault(); // no navigation: the key must never reach the URL bar
      start();
    });
    $("stop").addEventListener("click", () => {
      if (run) finish(run, "stopped", "Stopped.");
    });
  }

  // The key lives in sessionStorage at most (this tab, until it closes), and goes out
  // only as ?api_key= on same-origin requests: EventSource cannot set headers.
  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return ""; // storage disabled
    }
  }

  function storeKey(key) {
    try {
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      // storage disabled: the key is kept in the field only
    }
  }

  function start() {
    if (run) finish(run, "stopped", "Stopped.");
    const wallet = $("wallet").value.trim();
    const key = $("api-key").value.trim();
    storeKey(key);
    const query = key ? "?" + new URLSearchParams({ api_key: key }) : "";
    const url = `/v4/wallet/${encodeURIComponent(wallet)}/stream${query}`;
    const r = {
      url,
      source: new EventSource(url),
      lastId: "", // the last `trades` id: the cursor the browser resumes from
      seen: new Set(), // signatures shown: a resume must never add one twice
      duplicates: 0,
      connections: 0,
      scanned: 0, // by this connection: each counts from zero (SPEC §1)
    };
    run = r;
    rowsBody.replaceChildren();
    $("summary").hidden = true;
    showError(null);
    updateCounts(r);
    setState("connecting", "Connecting…");
    $("progress").textContent = "Waiting for the first event.";

    const on = (name, handler) =>
      r.source.addEventListener(name, (event) => {
        if (run === r) handler(r, event);
      });
    on("connected", onConnected);
    on("progress", onProgress);
    on("trades", onTrades);
    on("complete", onComplete);
    on("error", onError);
  }

  function onConnected(r, event) {
    const data = JSON.parse(event.data);
    r.connections += 1;
    r.scanned = 0;
    updateCounts(r);
    if (data.resumed_from) {
      showError(null);
      setState("streaming", `Streaming (resumed after ${shorten(data.resumed_from)}).`);
    } else {
      setState("streaming", "Streaming.");
    }
  }

  function onProgress(r, event) {
    r.scanned = JSON.parse(event.data).signatures_scanned;
    updateCounts(r);
  }

  function onTrades(r, event) {
    const fragment = document.createDocumentFragment();
    for (const trade of JSON.parse(event.data).trades) {
      // Counted, not hidden: the resume contract is that this stays 0.
      if (r.seen.has(trade.signature)) {
        r.duplicates += 1;
        continue;
      }
      r.seen.add(trade.signature);
      fragment.append(tradeRow(trade));
    }
    rowsBody.append(fragment);
    r.lastId = event.lastEventId;
    updateCounts(r);
  }

  function onComplete(r, event) {
    const data = JSON.parse(event.data);
    r.scanned = data.signatures_scanned;
    updateCounts(r);
    showSummary(r, data);
    finish(r, "complete", `Complete: ${r.seen.size} trades.`);
  }

  // Two kinds of `error`: the server's typed event (a MessageEvent with JSON data),
  // and the EventSource's own connection error (a plain Event).
  function onError(r, event) {
    if (typeof event.data === "string") {
      const data = JSON.parse(event.data);
      if ("last_event_id" in data) {
        // A resumable end (SPEC §2): let the EventSource reconnect with Last-Event-ID.
        showError(data.code, `${data.error} Resuming after the last trade received…`);
        setState("reconnecting", "Reconnecting to resume…");
      } else {
        showError(data.code, data.error);
        finish(r, "error", "Failed.");
      }
      return;
    }
    if (r.source.readyState === EventSource.CONNECTING) {
      // A dropped connection: the browser retries by itself after `retry` ms.
      setState("reconnecting", "Connection lost; reconnecting to resume after the last trade received…");
    } else {
      explainRefusal(r); // CLOSED: an HTTP error status, which EventSource does not expose
    }
  }

  // Fetch the URL once more to read the JSON error body (SPEC §2) and show its code.
  async function explainRefusal(r) {
    finish(r, "error", "The server refused the stream.");
    const headers = { Accept: "application/json" };
    if (r.lastId) headers["Last-Event-ID"] = r.lastId;
    const controller = new AbortController();
    try {
      const response = await fetch(r.url, { headers, cache: "no-store", signal: controller.signal });
      const type = response.headers.get("Content-Type") || "";
      if (run !== r) {
        controller.abort();
      } else if (type.startsWith("application/json")) {
        const body = await response.json();
        const wait = body.retry_after ? ` Retry in ${body.retry_after} s.` : "";
        showError(body.code, body.error + wait);
      } else {
        controller.abort(); // the stream opened this time: not ours to read
        showError(`HTTP ${response.status}`, "The stream could not be opened; try again.");
      }
    } catch {
      if (run === r) showError("NETWORK_ERROR", "The server could not be reached.");
    }
  }

  function finish(r, state, text) {
    r.source.close();
    setState(state, text);
  }

  function setState(state, text) {
    app.dataset.state = state;
    $("state").textContent = text;
    const running = RUNNING.has(state);
    $("start").disabled = running;
    $("stop").disabled = !running;
  }

  function updateCounts(r) {
    const rows = r.seen.size;
    app.dataset.rows = rows;
    app.dataset.duplicates = r.duplicates;
    app.dataset.connections = r.connections;
    $("row-count").textContent = rows;
    const since = r.connections > 1 ? " since the last resume" : "";
    let text = `${r.scanned} transactions scanned${since}, ${rows} trades found.`;
    if (r.duplicates) text += ` ${r.duplicates} duplicate trades received and skipped.`;
    $("progress").textContent = text;
  }

  function showError(code, message) {
    const box = $("error");
    box.hidden = code === null;
    box.replaceChildren();
    if (code === null) return;
    const strong = document.createElement("strong");
    strong.textContent = code;
    box.append(strong, ` ${message}`);
  }

  function showSummary(r, data) {
    const s = data.summary;
    const items = [
      ["Trades", String(data.trades_found)],
      ["Transactions scanned", String(data.signatures_scanned)],
      ["Buys / sells / swaps", `${s.buys} / ${s.sells} / ${s.swaps}`],
      ["Distinct tokens", String(s.unique_tokens)],
      ["SOL volume", `${s.volume_sol} SOL`],
      ["Oldest trade", utc(s.first_trade_at)],
      ["Newest trade", utc(s.last_trade_at)],
      ["Duration", `${data.duration_s} s`],
      ["History", data.truncated ? "cut short by the limit" : "complete"],
    ];
    const list = $("summary-list");
    list.replaceChildren();
    for (const [term, value] of items) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      list.append(dt, dd);
    }
    // A resumed connection's summary counts that connection only (SPEC §1).
    const note = $("summary-note");
    note.hidden = r.connections < 2;
    note.textContent =
      `The stream was resumed (${r.connections} connections): this summary covers the ` +
      `last one; the table holds all ${r.seen.size} trades.`;
    $("summary").hidden = false;
  }

  function tradeRow(trade) {
    const row = document.createElement("tr");
    row.dataset.signature = trade.signature;
    row.className = `action-${trade.action}`;
    const time = document.createElement("time");
    if (trade.timestamp != null) time.dateTime = new Date(trade.timestamp * 1000).toISOString();
    time.textContent = utc(trade.timestamp);
    row.append(
      cell(time),
      cell(trade.action),
      cell(leg(trade.token_in), "amount"),
      cell("→", "arrow"),
      cell(leg(trade.token_out), "amount"),
      cell(trade.dex || "—"),
      cell(titled(shorten(trade.signature), trade.signature), "mono"),
    );
    return row;
  }

  function leg(token) {
    return titled(`${token.amount} ${token.symbol || shorten(token.mint)}`, token.mint);
  }

  function titled(text, title) {
    const span = document.createElement("span");
    span.textContent = text;
    span.title = title;
    return span;
  }

  function cell(content, className) {
    const td = document.createElement("td");
    td.append(content);
    if (className) td.className = className;
    return td;
  }

  function shorten(text) {
    return text.length > 12 ? `${text.slice(0, 4)}…${text.slice(-4)}` : text;
  }

  function utc(seconds) {
    if (seconds == null) return "—";
    return new Date(seconds * 1000).toISOString().slice(0, 19).replace("T", " ");
  }

  init();
})();
