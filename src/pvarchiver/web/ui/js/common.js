/*
 * Shared helpers for the management pages (no framework, no build step).
 *
 * Every page calls the BPL with relative URLs ("../bpl/<action>"), as the AA's UI does, so the
 * pages work behind any reverse proxy prefix.  DOM is built with createElement/textContent,
 * never innerHTML with server data: PV names and report values are untrusted text.
 */
"use strict";

const AA = (() => {
  const BPL = "../bpl/";
  const RETRIEVAL = "../../retrieval/";

  /* The AA UI's client-side check for PV names (a glob adds * and ?). */
  const PV_NAME_RE = /^[a-zA-Z0-9:_\-+[\];/,#{}^<>.]+$/;
  const GLOB_RE = /^[a-zA-Z0-9:_\-+[\];/,#{}^<>.*?]+$/;

  const NAV = [
    ["index.html", "Home"],
    ["reports.html", "Reports"],
    ["metrics.html", "Metrics"],
    ["storage.html", "Storage"],
    ["namedflags.html", "Named flags"],
    ["chart.html", "Quick chart"],
  ];

  class BplError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  /* The most useful line from an error body: the AA's {"validation": ...}, our
     {"status":"error","message":...}, or the plain text the retrieval side sends. */
  function errorText(status, text) {
    try {
      const j = JSON.parse(text);
      if (j && typeof j === "object") {
        for (const k of ["validation", "message", "desc", "error", "detail"]) {
          if (typeof j[k] === "string" && j[k]) return j[k];
        }
      }
    } catch (_) { /* not JSON */ }
    const t = (text || "").trim();
    if (status === 404 && (!t || t === "Not Found")) return "this server does not offer it (HTTP 404)";
    return t ? t.slice(0, 500) : `HTTP ${status}`;
  }

  async function parse(resp) {
    const text = await resp.text();
    if (!resp.ok) throw new BplError(errorText(resp.status, text), resp.status);
    if (!text.trim()) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new BplError(`the server sent something that is not JSON: ${text.slice(0, 200)}`, resp.status);
    }
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") q.append(k, String(v));
    }
    const s = q.toString();
    return s ? "?" + s : "";
  }

  /* GET ../bpl/<action>?params -> parsed JSON (throws BplError with the server's message). */
  async function bpl(action, params) {
    return parse(await fetch(BPL + action + query(params), { cache: "no-store" }));
  }

  /* POST a JSON body (a list of names or of objects), the AA's multi-PV form. */
  async function bplPost(action, body, params) {
    const resp = await fetch(BPL + action + query(params), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    return parse(resp);
  }

  async function retrieval(path, params) {
    return parse(await fetch(RETRIEVAL + path + query(params), { cache: "no-store" }));
  }

  function chunks(list, size) {
    const out = [];
    for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
    return out;
  }

  /* One name per line; blank lines dropped, duplicates dropped (first kept), order kept. */
  function parseNames(text) {
    const seen = new Set();
    const out = [];
    for (const raw of (text || "").split(/\r?\n/)) {
      const n = raw.trim();
      if (n && !seen.has(n)) {
        seen.add(n);
        out.push(n);
      }
    }
    return out;
  }

  const isGlob = (name) => name.includes("*") || name.includes("?");
  const validName = (name) => PV_NAME_RE.test(name);
  const validPattern = (name) => GLOB_RE.test(name);

  /* el("td", {class: "x", "data-pv": name}, "text" | Node | [children]) */
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    if (children === undefined || children === null) return;
    if (Array.isArray(children)) {
      for (const c of children) append(node, c);
    } else if (children instanceof Node) {
      node.appendChild(children);
    } else {
      node.appendChild(document.createTextNode(String(children)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  /* The status line under the header: kind is "info", "ok" or "error". */
  function message(text, kind) {
    const box = document.getElementById("msg");
    if (!box) return;
    clear(box);
    box.className = "msg " + (kind || "info");
    if (Array.isArray(text)) {
      for (const line of text) box.appendChild(el("div", null, line));
    } else if (text) {
      box.textContent = text;
    }
    box.hidden = !text || (Array.isArray(text) && !text.length);
  }

  function pvDetailsLink(name) {
    return el("a", { href: "pvdetails.html?pv=" + encodeURIComponent(name) }, name);
  }

  function chartLink(name, label) {
    return el("a", { href: "chart.html?pv=" + encodeURIComponent(name), class: "chartlink" }, label || "Chart");
  }

  /* Ordered union of keys of the first rows: a report's columns, whatever the server sends. */
  function columnsOf(rows) {
    const cols = [];
    const seen = new Set();
    for (const r of rows.slice(0, 50)) {
      if (r && typeof r === "object") {
        for (const k of Object.keys(r)) {
          if (!seen.has(k)) {
            seen.add(k);
            cols.push(k);
          }
        }
      }
    }
    return cols;
  }

  function cellText(v) {
    if (v === undefined || v === null) return "";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  /* A table from rows; columns: [{key, label, render(row) -> Node|string}];
     rowAttrs(row) gives each <tr>'s attributes (e.g. data-pv, which the tests use). */
  function table(columns, rows, attrs, rowAttrs) {
    const head = el("tr", null, columns.map((c) => el("th", null, c.label || c.key)));
    const body = el("tbody");
    for (const row of rows) {
      const tr = el("tr", rowAttrs ? rowAttrs(row) : null);
      for (const c of columns) {
        const v = c.render ? c.render(row) : cellText(row[c.key]);
        tr.appendChild(el("td", { "data-col": c.key }, v));
      }
      body.appendChild(tr);
    }
    return el("table", Object.assign({ class: "grid" }, attrs || {}), [el("thead", null, head), body]);
  }

  /* Rows of a report rendered page by page, so 100,000 rows never sit in the DOM at once. */
  function pagedTable(container, columns, rows, pageSize, attrs, rowAttrs) {
    let page = 0;
    const pages = Math.max(1, Math.ceil(rows.length / pageSize));
    function draw() {
      clear(container);
      const start = page * pageSize;
      container.appendChild(table(columns, rows.slice(start, start + pageSize), attrs, rowAttrs));
      if (pages > 1) {
        container.appendChild(
          el("div", { class: "pager" }, [
            el("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; draw(); } }, "Previous"),
            ` rows ${start + 1}-${Math.min(rows.length, start + pageSize)} of ${rows.length} `,
            el("button", { type: "button", disabled: page >= pages - 1, onclick: () => { page += 1; draw(); } }, "Next"),
          ]),
        );
      }
    }
    draw();
  }

  function nav(active) {
    const bar = document.getElementById("nav");
    if (!bar) return;
    clear(bar);
    for (const [href, label] of NAV) {
      bar.appendChild(el("a", { href, class: href === active ? "active" : null }, label));
    }
    health(bar);
  }

  const HEALTH_EVERY_MS = 15000;

  /* The appliance's problems and warnings (getApplianceHealth: failing stores, low disk
     space, a journal that cannot write) in a banner under the navigation bar, on every page,
     refreshed every 15 s; hidden while all is well.  getApplianceHealth answers 503 when
     unhealthy, with the same JSON, so the body is read whatever the status. */
  async function health(bar) {
    let box = document.getElementById("healthBanner");
    if (!box) {
      box = el("div", { id: "healthBanner", class: "health", hidden: true, role: "status" });
      bar.after(box);
    }
    try {
      const resp = await fetch(BPL + "getApplianceHealth", { cache: "no-store" });
      const report = resp.status === 200 || resp.status === 503 ? await resp.json() : null;
      clear(box);
      const problems = (report && Array.isArray(report.problems)) ? report.problems : [];
      const warnings = (report && Array.isArray(report.warnings)) ? report.warnings : [];
      box.className = "health " + (problems.length ? "unhealthy" : "warning");
      box.dataset.status = report ? String(report.status) : "";
      for (const p of problems) box.appendChild(el("div", { class: "problem" }, String(p)));
      for (const w of warnings) box.appendChild(el("div", { class: "warning" }, String(w)));
      box.hidden = !problems.length && !warnings.length;
    } catch (_) {
      /* an older server without the call, or the server is restarting: no banner */
    }
    setTimeout(() => health(bar), HEALTH_EVERY_MS);
  }

  function params() {
    return new URLSearchParams(window.location.search);
  }

  /* Run async work on items with at most `limit` in flight (deletes are one PV per call). */
  async function pool(items, limit, worker) {
    const results = new Array(items.length);
    let next = 0;
    async function lane() {
      while (next < items.length) {
        const i = next++;
        try {
          results[i] = { ok: true, value: await worker(items[i], i) };
        } catch (e) {
          results[i] = { ok: false, error: e };
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
    return results;
  }

  /* A <dialog> as a promise: resolves to the form's FormData on OK, null on Cancel. */
  function ask(dialog) {
    return new Promise((resolve) => {
      const form = dialog.querySelector("form");
      function done(value) {
        form.removeEventListener("submit", onSubmit);
        dialog.removeEventListener("cancel", onCancel);
        for (const b of dialog.querySelectorAll("[data-cancel]")) b.removeEventListener("click", onCancelClick);
        dialog.close();
        resolve(value);
      }
      function onSubmit(ev) {
        ev.preventDefault();
        done(new FormData(form));
      }
      function onCancel() {
        done(null);
      }
      function onCancelClick(ev) {
        ev.preventDefault();
        done(null);
      }
      form.addEventListener("submit", onSubmit);
      dialog.addEventListener("cancel", onCancel);
      for (const b of dialog.querySelectorAll("[data-cancel]")) b.addEventListener("click", onCancelClick);
      dialog.showModal();
    });
  }

  /* Single-PV BPL answers are an object, multi-PV ones a list: always a list here. */
  function asList(result) {
    if (result === null || result === undefined) return [];
    return Array.isArray(result) ? result : [result];
  }

  return {
    BplError, bpl, bplPost, retrieval, chunks, parseNames, isGlob, validName, validPattern,
    el, clear, message, pvDetailsLink, chartLink, columnsOf, cellText, table, pagedTable, nav,
    params, pool, ask, asList,
  };
})();
