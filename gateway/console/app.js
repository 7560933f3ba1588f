// Switchyard console: plain JavaScript, no framework, no build step, nothing from another origin.
//
// The admin key lives in one module-scoped variable (`adminKey`): never in a cookie, the URL,
// localStorage, sessionStorage, the DOM after sign-in, or a log line. Every call goes to this
// gateway's public API (/admin/keys, /admin/audit, /v1/usage) with it as a Bearer header, so the page
// can do nothing that the API does not allow an admin key to do.
//
// The DOM is built with textContent and createElement only (never innerHTML), so a key, team or
// model name cannot inject markup.

const BASE = location.pathname.replace(/\/ui\/?$/, ""); // works behind a proxy that adds a path prefix
const MAX_DAYS = 31; // the longest range one "Show usage" reads
const MAX_READS = 500; // usage reads (names × days) one "Show usage" may make
const PARALLEL = 6; // usage reads in flight at once
const AUDIT_PAGE = 50;
const FIELDS = ["requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens"];
const DAY_MS = 86400000;

let adminKey = null; // the tab's memory only
let signedIn = false; // the key was accepted: a later 401 means it was revoked or changed
let keys = []; // the last GET /admin/keys answer
let auditBefore = null; // the id of the oldest audit row shown
let generation = 0; // bumped on sign-out: answers to an old session's calls are dropped

const $ = (id) => document.getElementById(id);
const intFmt = new Intl.NumberFormat("en-US");

// -- small DOM helpers ----------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function setStatus(id, text, isError) {
  const node = $(id);
  node.textContent = text || "";
  node.classList.toggle("error", Boolean(isError));
}

function fmtInt(n) {
  return typeof n === "number" ? intFmt.format(n) : "—";
}

// Cost: dollars when the usage answer has `cost_usd`, "—" when it does not (a gateway without cost).
function fmtCost(v) {
  if (typeof v !== "number") return "—";
  return "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 6 });
}

function fmtTime(rfc) {
  if (!rfc) return "—";
  return rfc.replace("T", " ").replace(/(\.\d+)?Z$/, "");
}

// -- banners (one per source, so a recovery clears only its own) ---------------------------------
const BANNERS = {
  usage:
    "Usage store unavailable: the gateway cannot read usage from Redis right now, so usage and cost are " +
    "not shown. Requests keep being served and counted; try again shortly.",
  keys:
    "Key store unavailable: Redis is not answering, so keys cannot be created, changed or revoked right now. " +
    "Existing keys keep working.",
  audit: "Audit log unavailable: Redis is not answering, so the audit log cannot be read right now.",
  network: "The gateway is not answering. Check that it is running, then try again.",
};

function showBanner(id) {
  let node = document.querySelector(`[data-banner="${id}"]`);
  if (!node) {
    node = el("p", { class: "banner", role: "alert", "data-banner": id, text: BANNERS[id] });
    $("banners").append(node);
  }
}

function clearBanner(id) {
  document.querySelector(`[data-banner="${id}"]`)?.remove();
}

// -- the API --------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param || null;
  }
}

class SignedOut extends Error {}

async function api(method, path, body) {
  if (adminKey === null) throw new SignedOut("signed out");
  const mine = generation;
  const headers = { Authorization: "Bearer " + adminKey, Accept: "application/json" };
  const init = {
    method,
    headers,
    cache: "no-store",
    credentials: "omit",
    redirect: "error",
    referrerPolicy: "no-referrer",
  };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(BASE + path, init);
  } catch {
    if (mine !== generation) throw new SignedOut("signed out");
    showBanner("network");
    throw new ApiError(0, "network", "The gateway did not answer.");
  }
  if (mine !== generation) throw new SignedOut("signed out");
  clearBanner("network");
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || "", err.message || `HTTP ${res.status}`, err.param);
    if (res.status === 401 && signedIn) {
      signOut("Your admin key is no longer accepted (401). Sign in again.");
      throw new SignedOut("signed out");
    }
    throw e;
  }
  return data;
}

const enc = encodeURIComponent;

// -- sign in and out ------------------------------------------------------------------------------
async function signIn(event) {
  event.preventDefault();
  const input = $("admin-key");
  const candidate = input.value.trim();
  setStatus("signin-error", "");
  if (!candidate) {
    setStatus("signin-error", "Type an admin key.", true);
    input.focus();
    return;
  }
  $("sign-in").disabled = true;
  adminKey = candidate;
  generation += 1;
  let answer = null;
  try {
    answer = await api("GET", "/admin/keys");
  } catch (e) {
    if (e instanceof ApiError && e.status === 503 && e.code !== "overloaded") {
      // The key was accepted (the frame authenticates first, and only admins reach the store).
      showBanner("keys");
    } else {
      adminKey = null;
      generation += 1;
      $("sign-in").disabled = false;
      input.setAttribute("aria-invalid", "true");
      if (e instanceof ApiError && e.status === 401) {
        setStatus("signin-error", "That key was not accepted (401): check it and try again.", true);
      } else if (e instanceof ApiError && e.status === 403) {
        setStatus(
          "signin-error",
          "That key is valid but is not an admin key (403). The console needs a key with admin: true.",
          true,
        );
      } else {
        setStatus("signin-error", `Sign-in failed: ${e.message}`, true);
      }
      input.select();
      input.focus();
      return;
    }
  }
  signedIn = true;
  input.value = ""; // the key stays in `adminKey` only, not in the DOM
  input.removeAttribute("aria-invalid");
  $("sign-in").disabled = false;
  $("signin-section").hidden = true;
  $("console").hidden = false;
  $("session").hidden = false;
  if (answer) renderKeys(answer.data || []);
  $("main").focus();
  await Promise.allSettled([loadToday(), loadAudit(false), showUsage()]);
}

function signOut(message) {
  adminKey = null;
  signedIn = false;
  generation += 1;
  keys = [];
  auditBefore = null;
  for (const id of ["keys-table", "audit-table", "usage-days", "usage-per-name", "usage-models"]) {
    $(id).tBodies[0].replaceChildren();
  }
  $("usage-days").tFoot.replaceChildren();
  $("charts").replaceChildren();
  $("usage-results").hidden = true;
  hideNewKey();
  for (const id of ["today-status", "usage-status", "keys-status", "audit-status", "create-error"]) setStatus(id, "");
  $("banners").replaceChildren();
  $("console").hidden = true;
  $("session").hidden = true;
  $("signin-section").hidden = false;
  setStatus("signin-error", message || "", Boolean(message));
  $("admin-key").focus();
}

// -- usage ----------------------------------------------------------------------------------------
function utcToday() {
  return new Date().toISOString().slice(0, 10);
}

function daysBetween(from, to) {
  const out = [];
  const end = Date.parse(to + "T00:00:00Z");
  for (let t = Date.parse(from + "T00:00:00Z"); t <= end; t += DAY_MS) out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}

function emptyTotals() {
  const t = { cost_usd: null };
  for (const f of FIELDS) t[f] = 0;
  return t;
}

function addInto(acc, src) {
  for (const f of FIELDS) acc[f] += typeof src[f] === "number" ? src[f] : 0;
  if (typeof src.cost_usd === "number") acc.cost_usd = (acc.cost_usd ?? 0) + src.cost_usd;
}

// Run `jobs` (functions returning promises) at most PARALLEL at a time; stop at the first failure.
async function pool(jobs, onProgress) {
  const results = new Array(jobs.length);
  let next = 0;
  let done = 0;
  let failure = null;
  async function worker() {
    while (failure === null && next < jobs.length) {
      const i = next++;
      try {
        results[i] = await jobs[i]();
      } catch (e) {
        failure = failure || e;
        return;
      }
      done += 1;
      onProgress?.(done, jobs.length);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, jobs.length) }, worker));
  if (failure) throw failure;
  return results;
}

function usagePath(by, name, date) {
  return `/v1/usage?${by}=${enc(name)}&date=${enc(date)}`;
}

function usageFailed(e, statusId) {
  if (e instanceof SignedOut) return;
  if (e instanceof ApiError && e.status === 503) {
    showBanner("usage");
    setStatus(statusId, "Usage store unavailable: no figures to show.", true);
  } else if (e instanceof ApiError && e.status === 429) {
    setStatus(statusId, `Rate limited while reading usage: ${e.message}`, true);
  } else {
    setStatus(statusId, `Reading usage failed: ${e.message}`, true);
  }
}

function teamsOf(list) {
  return [...new Set(list.map((k) => k.team).filter(Boolean))].sort();
}

async function loadToday() {
  const date = utcToday();
  $("today-date").textContent = `(${date}, UTC)`;
  const names = keys.map((k) => k.name);
  if (names.length > MAX_READS) {
    setStatus("today-status", `${names.length} keys: too many to total here; use "Show usage" per key or team.`);
    return;
  }
  setStatus("today-status", "Reading today's usage…");
  let answers;
  try {
    answers = await pool(names.map((n) => () => api("GET", usagePath("key", n, date))));
  } catch (e) {
    usageFailed(e, "today-status");
    for (const cell of $("keys-table").querySelectorAll(".today-requests, .today-errors, .today-cost")) {
      cell.textContent = "—";
    }
    return;
  }
  clearBanner("usage");
  const total = emptyTotals();
  const perKey = new Map();
  answers.forEach((a, i) => {
    addInto(total, a);
    perKey.set(names[i], a);
  });
  $("today-requests").textContent = fmtInt(total.requests);
  $("today-errors").textContent = fmtInt(total.errors);
  $("today-error-rate").textContent = total.requests ? `${((100 * total.errors) / total.requests).toFixed(1)}%` : "—";
  $("today-tokens").textContent = fmtInt(total.total_tokens);
  $("today-cost").textContent = fmtCost(total.cost_usd);
  for (const row of $("keys-table").tBodies[0].rows) {
    const a = perKey.get(row.dataset.name);
    if (!a) continue;
    row.querySelector(".today-requests").textContent = fmtInt(a.requests);
    row.querySelector(".today-errors").textContent = fmtInt(a.errors);
    row.querySelector(".today-cost").textContent = fmtCost(a.cost_usd);
  }
  setStatus("today-status", `All ${names.length} keys, read at ${new Date().toISOString().slice(11, 19)} UTC.`);
}

async function showUsage(event) {
  event?.preventDefault();
  const by = $("usage-by").value;
  const wanted = $("usage-name").value.trim();
  const from = $("usage-from").value;
  const to = $("usage-to").value;
  if (!from || !to || from > to) {
    setStatus("usage-status", "Choose a From date on or before the To date.", true);
    return;
  }
  const days = daysBetween(from, to);
  if (days.length > MAX_DAYS) {
    setStatus("usage-status", `Choose at most ${MAX_DAYS} days (this range has ${days.length}).`, true);
    return;
  }
  let names;
  if (wanted) names = [wanted];
  else names = by === "team" ? teamsOf(keys) : keys.map((k) => k.name);
  if (names.length === 0) {
    setStatus("usage-status", by === "team" ? "No key names a team." : "There are no keys.", true);
    $("usage-results").hidden = true;
    return;
  }
  const reads = names.length * days.length;
  if (reads > MAX_READS) {
    setStatus(
      "usage-status",
      `That is ${reads} usage reads (${names.length} ${by}s × ${days.length} days); the console makes at most ` +
        `${MAX_READS} at once. Choose one ${by} or a shorter range.`,
      true,
    );
    return;
  }
  const jobs = [];
  for (const name of names) for (const day of days) jobs.push(() => api("GET", usagePath(by, name, day)));
  $("usage-show").disabled = true;
  setStatus("usage-status", `Reading usage: 0 of ${reads}…`);
  let answers;
  try {
    answers = await pool(jobs, (done, all) => {
      if (done % 10 === 0) setStatus("usage-status", `Reading usage: ${done} of ${all}…`);
    });
  } catch (e) {
    usageFailed(e, "usage-status");
    return;
  } finally {
    $("usage-show").disabled = false;
  }
  clearBanner("usage");
  const perDay = new Map(days.map((d) => [d, emptyTotals()]));
  const perName = new Map(names.map((n) => [n, emptyTotals()]));
  const perModel = new Map();
  const total = emptyTotals();
  answers.forEach((a, i) => {
    const name = names[Math.floor(i / days.length)];
    const day = days[i % days.length];
    addInto(perDay.get(day), a);
    addInto(perName.get(name), a);
    addInto(total, a);
    for (const [model, m] of Object.entries(a.models || {})) {
      if (!perModel.has(model)) perModel.set(model, emptyTotals());
      addInto(perModel.get(model), m);
    }
  });
  renderUsage(by, perDay, perName, perModel, total);
  const what = wanted ? `${by} ${wanted}` : by === "team" ? `all ${names.length} teams` : `all ${names.length} keys`;
  setStatus("usage-status", `Usage of ${what}, ${from} to ${to} (UTC).`);
}

// The figures every usage table shows, in order: column header, field of a totals object, format.
const FIGURES = [
  ["Requests", "requests", fmtInt],
  ["Errors", "errors", fmtInt],
  ["Prompt tokens", "prompt_tokens", fmtInt],
  ["Completion tokens", "completion_tokens", fmtInt],
  ["Total tokens", "total_tokens", fmtInt],
  ["Cost (USD)", "cost_usd", fmtCost],
];

function numberCells(t) {
  return FIGURES.map(([, field, fmt]) => el("td", { class: fmt === fmtCost ? "num cost" : "num", text: fmt(t[field]) }));
}

// Each usage table's header row: its first column is in the page, the figures' columns follow.
function figureHeaders() {
  for (const id of ["usage-days", "usage-per-name", "usage-models"]) {
    $(id).tHead.rows[0].append(...FIGURES.map(([head]) => el("th", { scope: "col", class: "num", text: head })));
  }
}

function byRequests(map) {
  return [...map.entries()].sort((a, b) => b[1].requests - a[1].requests || a[0].localeCompare(b[0]));
}

function renderUsage(by, perDay, perName, perModel, total) {
  $("usage-days").tBodies[0].replaceChildren(
    ...[...perDay.entries()].map(([d, t]) => el("tr", {}, el("th", { scope: "row", text: d }), ...numberCells(t))),
  );
  $("usage-days").tFoot.replaceChildren(el("tr", {}, el("th", { scope: "row", text: "Total" }), ...numberCells(total)));
  const label = by === "team" ? "Team" : "Key";
  $("usage-names-caption").textContent = `Per ${label.toLowerCase()}`;
  $("usage-name-col").textContent = label;
  $("usage-per-name").tBodies[0].replaceChildren(
    ...byRequests(perName).map(([n, t]) => el("tr", { "data-name": n }, el("th", { scope: "row", text: n }), ...numberCells(t))),
  );
  const models = byRequests(perModel);
  $("usage-models").tBodies[0].replaceChildren(
    ...(models.length
      ? models.map(([m, t]) =>
          el("tr", {}, el("th", { scope: "row", text: m || "(no model: admin and usage calls)" }), ...numberCells(t)),
        )
      : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No requests in this range." }))]),
  );
  const days = [...perDay.keys()];
  const rows = [...perDay.values()];
  const costKnown = rows.some((t) => typeof t.cost_usd === "number");
  $("charts").replaceChildren(
    barChart("Requests and errors per day", days, [
      { name: "Requests", cls: "s-requests", values: rows.map((t) => t.requests) },
      { name: "Errors", cls: "s-errors", values: rows.map((t) => t.errors) },
    ], fmtInt),
    barChart("Tokens per day", days, [
      { name: "Prompt tokens", cls: "s-prompt", values: rows.map((t) => t.prompt_tokens) },
      { name: "Completion tokens", cls: "s-completion", values: rows.map((t) => t.completion_tokens) },
    ], fmtInt, true),
    costKnown
      ? barChart("Cost per day (USD)", days, [
          { name: "Cost", cls: "s-cost", values: rows.map((t) => t.cost_usd ?? 0) },
        ], fmtCost)
      : noChart("Cost per day (USD)", "— This gateway's usage answers carry no cost."),
  );
  $("usage-results").hidden = false;
}

// -- charts: inline SVG, drawn here ---------------------------------------------------------------
let chartSeq = 0;

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// `stacked`: series drawn on top of each other (parts of one whole); otherwise side by side.
function barChart(title, days, series, fmt, stacked) {
  const id = `chart-${++chartSeq}`;
  const W = 420;
  const H = 200;
  const left = 56;
  const right = 12;
  const top = 12;
  const bottom = 36;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const peak = Math.max(
    0,
    ...days.map((_, i) => (stacked ? series.reduce((s, x) => s + x.values[i], 0) : Math.max(...series.map((x) => x.values[i])))),
  );
  const max = niceMax(peak);
  const y = (v) => top + plotH - (v / max) * plotH;
  const slot = plotW / days.length;
  const groupW = Math.max(2, slot * 0.7);
  const barW = stacked ? groupW : groupW / series.length;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-labelledby": `${id}-title ${id}-desc`,
    class: "chart",
    preserveAspectRatio: "xMidYMid meet",
  });
  const totals = series.map((s) => `${s.name}: ${fmt(s.values.reduce((a, b) => a + b, 0))} in all`).join("; ");
  root.append(
    svg("title", { id: `${id}-title`, text: title }),
    svg("desc", { id: `${id}-desc`, text: `${days.length} days from ${days[0]} to ${days[days.length - 1]}. ${totals}. The table below has every figure.` }),
  );
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    root.append(
      svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end", text: fmt(v) }),
    );
  }
  const every = Math.ceil(days.length / 7);
  days.forEach((d, i) => {
    const x0 = left + slot * i + (slot - groupW) / 2;
    let base = 0;
    series.forEach((s, j) => {
      const v = s.values[i];
      const x = stacked ? x0 : x0 + barW * j;
      const y1 = y(base + v);
      const h = Math.max(0, y(base) - y1);
      root.append(
        svg("rect", { x, y: y1, width: Math.max(1, barW - 1), height: h, class: `bar ${s.cls}` },
          svg("title", { text: `${d}: ${fmt(v)} ${s.name.toLowerCase()}` })),
      );
      if (stacked) base += v;
    });
    if (i % every === 0) {
      root.append(svg("text", { x: left + slot * i + slot / 2, y: H - bottom + 16, class: "axis", "text-anchor": "middle", text: d.slice(5) }));
    }
  });
  const legend = el("ul", { class: "legend", "aria-hidden": "true" },
    ...series.map((s) => el("li", {}, el("span", { class: `swatch ${s.cls}` }), s.name)));
  return el("figure", { class: "chart-box" }, el("figcaption", { text: title }), root, legend);
}

function noChart(title, text) {
  return el("figure", { class: "chart-box" }, el("figcaption", { text: title }), el("p", { class: "muted no-chart", text }));
}

// -- keys -----------------------------------------------------------------------------------------
function fmtLimits(limits) {
  const parts = Object.entries(limits || {}).map(([k, v]) => (typeof v === "object" ? `${k} ${JSON.stringify(v)}` : `${k} ${v}`));
  return parts.length ? parts.join(", ") : "none";
}

function keyRow(k) {
  const actions = el("div", { class: "action-row" });
  if (k.source === "runtime") {
    const grace = el("input", {
      type: "number",
      min: 0,
      max: 2592000,
      step: 1,
      value: 0,
      class: "grace",
      "aria-label": `Grace seconds: how long the old key of ${k.name} keeps working after Rotate`,
    });
    actions.append(
      el("button", {
        type: "button",
        class: "disable",
        text: k.disabled ? "Enable" : "Disable",
        "aria-label": `${k.disabled ? "Enable" : "Disable"} ${k.name}`,
        onclick: () => setDisabled(k.name, !k.disabled),
      }),
      el("label", { class: "grace-label" }, el("span", { text: "Grace (s)", "aria-hidden": "true" }), grace),
      el("button", {
        type: "button",
        class: "rotate",
        text: "Rotate",
        "aria-label": `Rotate ${k.name}`,
        onclick: () => rotateKey(k.name, grace),
      }),
      el("button", {
        type: "button",
        class: "revoke danger",
        text: "Revoke",
        "aria-label": `Revoke ${k.name}`,
        onclick: () => revokeKey(k.name),
      }),
    );
  } else {
    actions.append(el("span", { class: "muted", text: "Config file" }));
  }
  actions.append(
    el("button", {
      type: "button",
      class: "show-usage",
      text: "Usage",
      "aria-label": `Show usage of ${k.name}`,
      onclick: () => {
        $("usage-by").value = "key";
        $("usage-name").value = k.name;
        $("usage-section").scrollIntoView();
        showUsage();
        $("usage-name").focus();
      },
    }),
  );
  const status = k.previous_key_expires_at ? `${k.status} (old key until ${fmtTime(k.previous_key_expires_at)})` : k.status;
  return el(
    "tr",
    { "data-name": k.name, class: k.status !== "active" ? "inactive" : null },
    el("th", { scope: "row", text: k.name }, k.admin ? el("span", { class: "tag", text: "admin" }) : null),
    el("td", { text: k.source }),
    el("td", { class: `status-${k.status}`, text: status }),
    el("td", { text: k.team || "—" }),
    el("td", { class: "models", text: (k.models || []).join(", ") }),
    el("td", { text: fmtLimits(k.limits) }),
    el("td", { class: "num today-requests", text: "…" }),
    el("td", { class: "num today-errors", text: "…" }),
    el("td", { class: "num today-cost", text: "…" }),
    el("td", { class: "created", title: k.created_at ? `${fmtTime(k.created_at)} UTC by ${k.created_by}` : null },
      k.created_at ? el("time", { datetime: k.created_at, text: k.created_at.slice(0, 10) }) : "—"),
    el("td", { class: "actions" }, actions),
  );
}

function fillNameChoices() {
  const names = $("usage-by").value === "team" ? teamsOf(keys) : keys.map((k) => k.name);
  $("usage-names").replaceChildren(...names.map((n) => el("option", { value: n })));
}

function renderKeys(list) {
  keys = list;
  $("keys-table").tBodies[0].replaceChildren(...list.map(keyRow));
  fillNameChoices();
  setStatus("keys-status", `${list.length} keys (${list.filter((k) => k.source === "runtime").length} runtime).`);
}

async function loadKeys() {
  try {
    renderKeys((await api("GET", "/admin/keys")).data || []);
    clearBanner("keys");
  } catch (e) {
    if (e instanceof SignedOut) return;
    if (e.status === 503) showBanner("keys");
    setStatus("keys-status", `Reading keys failed: ${e.message}`, true);
  }
}

function keyChangeFailed(e, action, statusId) {
  if (e instanceof SignedOut) return;
  if (e.status === 503) showBanner("keys");
  setStatus(statusId, `${action} failed: ${e.message}`, true);
}

async function refreshAfterChange() {
  await loadKeys();
  await Promise.allSettled([loadToday(), loadAudit(false)]);
}

async function createKey(event) {
  event.preventDefault();
  setStatus("create-error", "");
  const name = $("create-name").value.trim();
  const body = { name };
  const team = $("create-team").value.trim();
  if (team) body.team = team;
  const models = $("create-models").value.split(/[\s,]+/).filter(Boolean);
  if (models.length) body.models = models;
  const rpm = $("create-rpm").value.trim();
  if (rpm) body.limits = { rpm: Number(rpm) };
  $("create-submit").disabled = true;
  let created;
  try {
    created = await api("POST", "/admin/keys", body);
  } catch (e) {
    keyChangeFailed(e, "Creating the key", "create-error");
    const field = { name: "create-name", team: "create-team", models: "create-models" }[
      String(e.param || "").split(".")[0]
    ] || (String(e.param || "").startsWith("limits") ? "create-rpm" : null);
    if (field) $(field).setAttribute("aria-invalid", "true");
    return;
  } finally {
    $("create-submit").disabled = false;
  }
  clearBanner("keys");
  for (const id of ["create-name", "create-team", "create-models", "create-rpm"]) {
    $(id).value = "";
    $(id).removeAttribute("aria-invalid");
  }
  showNewKey(`New key for ${created.name}`, created.key);
  await refreshAfterChange();
}

function showNewKey(title, secret) {
  $("new-key-title").textContent = title;
  $("new-key-label").textContent = `${title} (shown once)`;
  $("new-key-value").value = secret;
  setStatus("copy-status", "");
  $("new-key").hidden = false;
  $("new-key-value").focus();
  $("new-key-value").select();
}

function hideNewKey() {
  $("new-key-value").value = "";
  $("new-key").hidden = true;
}

async function copyKey() {
  const input = $("new-key-value");
  try {
    await navigator.clipboard.writeText(input.value);
    setStatus("copy-status", "Copied to the clipboard.");
  } catch {
    // No async clipboard (a page served over plain http to another host): the old way.
    input.focus();
    input.select();
    const ok = document.execCommand && document.execCommand("copy");
    setStatus("copy-status", ok ? "Copied to the clipboard." : "Select the key and press Ctrl+C (⌘C) to copy it.", !ok);
  }
}

async function setDisabled(name, disabled) {
  try {
    await api("PATCH", `/admin/keys/${enc(name)}`, { disabled });
  } catch (e) {
    keyChangeFailed(e, disabled ? "Disabling" : "Enabling", "keys-status");
    return;
  }
  await refreshAfterChange();
  setStatus("keys-status", `Key ${name} ${disabled ? "disabled: it gets 401 until enabled" : "enabled"}.`);
  rowButton(name, "disable")?.focus();
}

function rowButton(name, cls) {
  for (const row of $("keys-table").tBodies[0].rows) if (row.dataset.name === name) return row.querySelector(`button.${cls}`);
  return null;
}

async function rotateKey(name, graceInput) {
  const grace = Number(graceInput.value || 0);
  if (!Number.isInteger(grace) || grace < 0 || grace > 2592000) {
    setStatus("keys-status", "Grace seconds must be a whole number from 0 to 2592000 (30 days).", true);
    graceInput.focus();
    return;
  }
  const when = grace ? `keeps working for ${grace} more seconds` : "stops working at once";
  if (!(await confirmAction(`Rotate ${name}?`, `A new key is made and shown once; the current key ${when}.`, "Rotate"))) {
    return;
  }
  let rotated;
  try {
    rotated = await api("POST", `/admin/keys/${enc(name)}/rotate`, { grace_seconds: grace });
  } catch (e) {
    keyChangeFailed(e, "Rotating", "keys-status");
    return;
  }
  clearBanner("keys");
  showNewKey(`New key for ${name} (rotated)`, rotated.key);
  await refreshAfterChange();
}

async function revokeKey(name) {
  const ok = await confirmAction(
    `Revoke ${name}?`,
    `Every application using ${name} gets 401 from now on. This cannot be undone (a new key would need a new secret).`,
    "Revoke",
  );
  if (!ok) {
    rowButton(name, "revoke")?.focus();
    return;
  }
  try {
    await api("DELETE", `/admin/keys/${enc(name)}`);
  } catch (e) {
    keyChangeFailed(e, "Revoking", "keys-status");
    return;
  }
  clearBanner("keys");
  await refreshAfterChange();
  setStatus("keys-status", `Key ${name} revoked.`);
  $("keys-title").scrollIntoView();
  $("create-name").focus();
}

// A modal <dialog>: focus stays inside it, Escape cancels, focus returns where it was.
function confirmAction(title, text, verb) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = verb;
  const back = document.activeElement;
  return new Promise((resolve) => {
    const finish = (answer) => {
      $("confirm-ok").removeEventListener("click", ok);
      $("confirm-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("close", cancel);
      if (dialog.open) dialog.close();
      if (back && document.contains(back)) back.focus();
      resolve(answer);
    };
    const ok = () => finish(true);
    const cancel = () => finish(false);
    $("confirm-ok").addEventListener("click", ok);
    $("confirm-cancel").addEventListener("click", cancel);
    dialog.addEventListener("close", cancel);
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// -- audit ----------------------------------------------------------------------------------------
async function loadAudit(more) {
  const q = new URLSearchParams({ limit: String(AUDIT_PAGE) });
  if (more && auditBefore) q.set("before", auditBefore);
  let answer;
  try {
    answer = await api("GET", `/admin/audit?${q}`);
  } catch (e) {
    if (e instanceof SignedOut) return;
    if (e.status === 503) showBanner("audit");
    setStatus("audit-status", `Reading the audit log failed: ${e.message}`, true);
    return;
  }
  clearBanner("audit");
  const rows = (answer.data || []).map((a) =>
    el("tr", {}, el("td", { text: fmtTime(a.time) }), el("td", { text: a.admin || "" }), el("td", { text: a.action || "" }),
      el("td", { text: a.key || "" }), el("td", { text: a.detail || "" })),
  );
  const body = $("audit-table").tBodies[0];
  if (more) body.append(...rows);
  else body.replaceChildren(...rows);
  const data = answer.data || [];
  if (data.length) auditBefore = data[data.length - 1].id;
  $("audit-more").hidden = !answer.has_more;
  const n = body.rows.length;
  setStatus("audit-status", n ? `${n} ${n === 1 ? "entry" : "entries"} shown.` : "No key changes yet.");
}

// -- wiring ---------------------------------------------------------------------------------------
function init() {
  figureHeaders();
  const today = utcToday();
  $("usage-to").value = today;
  $("usage-from").value = new Date(Date.parse(today + "T00:00:00Z") - 6 * DAY_MS).toISOString().slice(0, 10);
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut("Signed out: the key is forgotten."));
  $("usage-form").addEventListener("submit", showUsage);
  $("usage-by").addEventListener("change", fillNameChoices);
  $("create-form").addEventListener("submit", createKey);
  $("copy-key").addEventListener("click", copyKey);
  $("dismiss-key").addEventListener("click", () => {
    hideNewKey();
    $("create-name").focus();
  });
  $("refresh").addEventListener("click", () => Promise.allSettled([loadToday(), showUsage()]));
  $("keys-refresh").addEventListener("click", async () => {
    await loadKeys();
    await loadToday();
  });
  $("audit-refresh").addEventListener("click", () => loadAudit(false));
  $("audit-more").addEventListener("click", () => loadAudit(true));
  document.documentElement.dataset.ready = "1"; // for tests: the handlers are wired
}

init();
