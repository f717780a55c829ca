// walletd demo page: one EventSource per run, events as in SPEC §1, errors as in §2.
// Plain script, no build step; every value from the server reaches the page as text
// (textContent), never as HTML. With "Follow live trades" the stream is `follow=true`:
// the history, `caught_up`, then live trades, added at the top of the table.
"use strict";

(() => {
  const KEY_STORAGE = "walletd.apiKey";
  const RUNNING = new Set(["connecting", "streaming", "reconnecting", "live"]);
  const FRESH_MS = 2500; // how long a live row stays highlighted
  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const rowsBody = document.querySelector("#trades tbody");
  const { Chart, solMoved, formatSol } = window.walletdChart;
  const chart = new Chart($("chart"), $("chart-note"));

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
    const follow = $("follow").checked;
    storeKey(key);
    const params = new URLSearchParams();
    if (follow) params.set("follow", "true");
    if (key) params.set("api_key", key);
    const query = params.toString() ? `?${params}` : "";
    const url = `/v4/wallet/${encodeURIComponent(wallet)}/stream${query}`;
    const r = {
      url,
      follow,
      source: new EventSource(url),
      lastId: "", // the last `trades` id: the cursor the browser resumes from
      seen: new Set(), // signatures shown: a resume must never add one twice
      duplicates: 0,
      connections: 0,
      scanned: 0, // by this connection: each counts from zero (SPEC §1)
      live: false, // this connection sent `caught_up`: its trades are new ones
      caughtUp: null, // the first `caught_up` event's data
      liveTrades: 0,
      tally: newTally(), // the summary of every trade in the table
    };
    run = r;
    app.dataset.follow = follow;
    rowsBody.replaceChildren();
    chart.reset();
    $("chart-panel").hidden = true;
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
    on("caught_up", onCaughtUp);
    on("complete", onComplete);
    on("error", onError);
  }

  function onConnected(r, event) {
    const data = JSON.parse(event.data);
    r.connections += 1;
    r.scanned = 0;
    r.live = false; // a resumed follow sends the rest of the history, then `caught_up`
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

  // History batches come newest first and go below; live ones come oldest first and go
  // on top, so the table stays newest first.
  function onTrades(r, event) {
    const rows = [];
    for (const trade of JSON.parse(event.data).trades) {
      // Counted, not shown twice: the resume contract is that this stays 0.
      if (r.seen.has(trade.signature)) {
        r.duplicates += 1;
        continue;
      }
      r.seen.add(trade.signature);
      addToTally(r.tally, trade);
      chart.add(trade);
      const row = tradeRow(trade);
      if (r.live) markFresh(row);
      rows.push(row);
    }
    if (r.live) {
      rowsBody.prepend(...rows.reverse());
      r.liveTrades += rows.length;
    } else {
      rowsBody.append(...rows);
    }
    $("chart-panel").hidden = r.seen.size === 0;
    r.lastId = event.lastEventId;
    updateCounts(r);
    if (r.caughtUp) showFollowSummary(r);
  }

  function markFresh(row) {
    row.dataset.live = "true";
    row.classList.add("fresh");
    setTimeout(() => row.classList.remove("fresh"), FRESH_MS);
  }

  function onCaughtUp(r, event) {
    const data = JSON.parse(event.data);
    r.live = true;
    r.scanned = data.signatures_scanned;
    if (event.lastEventId) r.lastId = event.lastEventId;
    if (!r.caughtUp) r.caughtUp = data;
    showError(null);
    updateCounts(r);
    showFollowSummary(r);
    setState("live", "Caught up. Following live trades…");
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
    if (r.caughtUp) {
      text = `${rows} trades: ${rows - r.liveTrades} from the history, ${r.liveTrades} live since caught up.`;
    }
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

  function newTally() {
    return { buys: 0, sells: 0, swaps: 0, mints: new Set(), first: null, last: null, lamports: 0n };
  }

  function addToTally(t, trade) {
    if (trade.action === "buy") t.buys += 1;
    else if (trade.action === "sell") t.sells += 1;
    else if (trade.action === "swap") t.swaps += 1;
    t.mints.add(trade.token_in.mint);
    t.mints.add(trade.token_out.mint);
    if (trade.timestamp != null) {
      if (t.first === null || trade.timestamp < t.first) t.first = trade.timestamp;
      if (t.last === null || trade.timestamp > t.last) t.last = trade.timestamp;
    }
    t.lamports += solMoved(trade);
  }

  // A follow's summary is the table's, across every connection, and kept current as
  // live trades arrive (the server's `caught_up` summary covers one connection's history).
  function showFollowSummary(r) {
    const t = r.tally;
    showItems([
      ["Trades", String(r.seen.size)],
      ["Live trades", String(r.liveTrades)],
      ["Buys / sells / swaps", `${t.buys} / ${t.sells} / ${t.swaps}`],
      ["Distinct tokens", String(t.mints.size)],
      ["SOL volume", `${formatSol(t.lamports)} SOL`],
      ["Oldest trade", utc(t.first)],
      ["Newest trade", utc(t.last)],
      ["Caught up after", `${r.caughtUp.duration_s} s`],
    ]);
    const note = $("summary-note");
    note.hidden = false;
    note.textContent = "Counts every trade in the table, across reconnections, and follows the live ones.";
  }

  function showItems(items) {
    const list = $("summary-list");
    list.replaceChildren();
    for (const [term, value] of items) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = term;
      dd.textContent = value;
      list.append(dt, dd);
    }
    $("summary").hidden = false;
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
    showItems(items);
    // A resumed connection's summary counts that connection only (SPEC §1).
    const note = $("summary-note");
    note.hidden = r.connections < 2;
    note.textContent =
      `The stream was resumed (${r.connections} connections): this summary covers the ` +
      `last one; the table holds all ${r.seen.size} trades.`;
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
