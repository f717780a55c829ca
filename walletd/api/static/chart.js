// walletd demo page: the activity chart, plain SVG (no library; the CSP allows 'self'
// only). Trades per hour (UTC) by action, stacked, one bar group per hour that has
// trades; the cumulative SOL volume over the same hours as a line on the right axis.
// Exact sums: SOL amounts are added as lamports in BigInt, as the server's summary does.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const WSOL = "So11111111111111111111111111111111111111112";
  const ACTIONS = ["buy", "sell", "swap"];
  const MAX_GROUPS = 120; // more hours than this: the newest ones (the caption says so)
  const W = 1000;
  const H = 250;
  const M = { top: 14, right: 104, bottom: 40, left: 44 };

  // "1.5" -> 1500000000n; the server sends exact decimal strings of at most 9 places.
  function lamports(amount) {
    const [whole, fraction = ""] = String(amount).split(".");
    return BigInt(whole || "0") * 1_000_000_000n + BigInt((fraction + "000000000").slice(0, 9));
  }

  // 1500000000n -> "1.5", as walletd formats `volume_sol`.
  function formatSol(value) {
    const whole = value / 1_000_000_000n;
    const fraction = (value % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "");
    return fraction ? `${whole}.${fraction}` : `${whole}`;
  }

  // The SOL a trade moved: SOL spent plus SOL received (SPEC §1 summary).
  function solMoved(trade) {
    let total = 0n;
    for (const leg of [trade.token_in, trade.token_out]) {
      if (leg && leg.mint === WSOL) total += lamports(leg.amount);
    }
    return total;
  }

  function el(name, attributes, className) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (className) node.setAttribute("class", className);
    return node;
  }

  function text(x, y, content, className, anchor = "middle") {
    const node = el("text", { x, y, "text-anchor": anchor }, className);
    node.textContent = content;
    return node;
  }

  function hourLabel(hour) {
    return new Date(hour * 1000).toISOString().slice(5, 13).replace("T", " ") + ":00";
  }

  // A round step so that about four gridlines span [0, max].
  function niceStep(max) {
    const raw = Math.max(max, 1) / 4;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
    return step >= 1 || max < 1 ? step : 1;
  }

  class Chart {
    constructor(svg, caption) {
      this.svg = svg;
      this.caption = caption;
      this.reset();
    }

    reset() {
      this.hours = new Map(); // hour (unix s) -> {buy, sell, swap, lamports}
      this.undated = 0;
      this.pending = false;
      this.draw();
    }

    add(trade) {
      if (trade.timestamp == null) {
        this.undated += 1;
        return;
      }
      const hour = Math.floor(trade.timestamp / 3600) * 3600;
      let bucket = this.hours.get(hour);
      if (!bucket) {
        bucket = { buy: 0, sell: 0, swap: 0, lamports: 0n };
        this.hours.set(hour, bucket);
      }
      if (trade.action in bucket) bucket[trade.action] += 1;
      bucket.lamports += solMoved(trade);
      this.schedule();
    }

    // Batches come faster than frames: draw once per frame at most.
    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.draw();
      });
    }

    draw() {
      const all = [...this.hours.keys()].sort((a, b) => a - b);
      const shown = all.slice(-MAX_GROUPS);
      let cumulative = 0n;
      const sums = new Map(); // hour -> cumulative lamports at its end, over every hour
      for (const hour of all) {
        cumulative += this.hours.get(hour).lamports;
        sums.set(hour, cumulative);
      }
      const svg = this.svg;
      svg.replaceChildren();
      svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
      svg.dataset.groups = shown.length;
      svg.dataset.volume = formatSol(cumulative);
      const plotW = W - M.left - M.right;
      const plotH = H - M.top - M.bottom;
      const bottom = M.top + plotH;
      if (!shown.length) {
        svg.append(text(W / 2, H / 2, "No trades yet.", "chart-empty"));
        this.caption.textContent = "Trades per hour will appear here as they arrive.";
        return;
      }
      const maxCount = Math.max(...shown.map((h) => ACTIONS.reduce((n, a) => n + this.hours.get(h)[a], 0)));
      const countStep = niceStep(maxCount);
      const countTop = Math.ceil(maxCount / countStep) * countStep;
      const solTop = Math.max(Number(formatSol(cumulative)), 1e-9);
      const yCount = (n) => bottom - (n / countTop) * plotH;
      const ySol = (lam) => bottom - (Number(formatSol(lam)) / solTop) * plotH;

      const grid = el("g", {}, "chart-grid");
      for (let n = 0; n <= countTop; n += countStep) {
        grid.append(el("line", { x1: M.left, x2: M.left + plotW, y1: yCount(n), y2: yCount(n) }));
        grid.append(text(M.left - 6, yCount(n) + 4, String(n), "chart-axis", "end"));
      }
      for (const fraction of [0, 0.5, 1]) {
        const label = (solTop * fraction).toLocaleString("en-US", { maximumFractionDigits: 2 });
        grid.append(text(M.left + plotW + 6, bottom - fraction * plotH + 4, `${label} SOL`, "chart-axis chart-sol", "start"));
      }
      svg.append(grid);

      const slot = plotW / shown.length;
      const barW = Math.max(1, Math.min(slot * 0.72, 36));
      const labelEvery = Math.ceil(shown.length / 8);
      const bars = el("g", {}, "chart-bars");
      const points = [];
      shown.forEach((hour, i) => {
        const bucket = this.hours.get(hour);
        const x = M.left + slot * i + (slot - barW) / 2;
        const group = el("g", {}, "hour");
        group.dataset.hour = hour;
        for (const action of ACTIONS) group.dataset[action] = bucket[action];
        let base = 0;
        for (const action of ACTIONS) {
          const n = bucket[action];
          if (!n) continue;
          group.append(el("rect", { x, y: yCount(base + n), width: barW, height: yCount(base) - yCount(base + n) }, `bar-${action}`));
          base += n;
        }
        const title = el("title", {});
        title.textContent =
          `${hourLabel(hour)} UTC: ${bucket.buy} buys, ${bucket.sell} sells, ${bucket.swap} swaps; ` +
          `${formatSol(sums.get(hour))} SOL traded by then`;
        group.append(title);
        if (i > 0 && hour - shown[i - 1] > 3600) {
          // Hours without trades are left out: a dashed line marks the jump in time.
          const gx = M.left + slot * i;
          group.append(el("line", { x1: gx, x2: gx, y1: M.top, y2: bottom }, "chart-gap"));
        }
        if (i % labelEvery === 0) group.append(text(x + barW / 2, bottom + 16, hourLabel(hour), "chart-axis"));
        bars.append(group);
        points.push(`${(x + barW / 2).toFixed(1)},${ySol(sums.get(hour)).toFixed(1)}`);
      });
      svg.append(bars);
      svg.append(el("line", { x1: M.left, x2: M.left + plotW, y1: bottom, y2: bottom }, "chart-baseline"));
      svg.append(el("polyline", { points: points.join(" ") }, "chart-volume"));
      for (const point of points) {
        const [cx, cy] = point.split(",");
        svg.append(el("circle", { cx, cy, r: 2.5 }, "chart-volume-dot"));
      }
      const hidden = all.length - shown.length;
      let note = `${all.length} hours with trades (UTC); ${formatSol(cumulative)} SOL in all.`;
      if (hidden) note += ` Showing the newest ${shown.length}.`;
      if (this.undated) note += ` ${this.undated} trades without a time are left out.`;
      this.caption.textContent = note;
    }
  }

  window.walletdChart = { Chart, solMoved, formatSol };
})();
