// tradeflow dashboard: the operator's page. No framework, no inline code (the page's CSP allows
// scripts from this origin only). Every value is written with textContent, never innerHTML: a
// decision's reason may be an LLM's text.
//
// Data: the REST resources under /api/v1 with a read token the operator types once (kept in
// sessionStorage: this tab only, gone when it closes; never localStorage or a cookie). Live:
// the WebSocket /api/v1/ws; an event marks the panels it concerns stale and they are read again.
// Kill switch: signed here with WebCrypto (HMAC-SHA256 over "action:timestamp"); the secret is
// read from its field, cleared at once, and never sent nor kept.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "tradeflow.api-token";
const CHANNELS = ["orders", "positions", "decisions", "safety", "metrics"];
// The panels an event on each channel makes stale (a fill moves positions and equity). The
// metrics channel is a periodic snapshot of counts: see onMetrics.
const STALE = {
  orders: ["orders", "positions", "metrics"],
  positions: ["positions", "metrics"],
  decisions: ["decisions"],
  safety: ["safety", "orders", "positions"],
};
const DECISIONS_SHOWN = 20;
// What "open" means (core/orders.py: every status but the terminal ones); the API filters by one
// status at a time, so the open orders are these pages together.
const OPEN_STATUSES = ["new", "submitted", "accepted", "partially_filled", "cancel_pending"];
const REFRESH_DELAY_MS = 400; // a burst of events is read once (and stays under the rate limit)
const POLL_MS = 15000; // without the WebSocket, the trading state is polled
const RECONNECT_MAX_MS = 30000;
// The equity moves with prices too (no event for that): read again at least this often.
const METRICS_MAX_AGE_MS = 60000;

const $ = (id) => document.getElementById(id);

class TokenRefused extends Error {}
// Reads made with the current token; forgetting it aborts them, so that an answer still on its
// way is never shown after the data went with the token.
let reads = new AbortController();

// --- small DOM helpers ---------------------------------------------------------------------

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function show(text, node, kind) {
  node.textContent = text;
  if (kind) node.dataset.kind = kind;
  else delete node.dataset.kind;
}

function panelError(panel, message) {
  $(`${panel}-panel`).querySelector(".panel-error").textContent = message || "";
}

function label(key) {
  return key.replaceAll("_", " ");
}

function shown(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(4);
  if (Array.isArray(value)) return value.map(shown).join(", ") || "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace("T", " ").slice(0, 16);
}

function figures(dl, pairs) {
  dl.replaceChildren(
    ...pairs.map(([k, v]) => {
      const div = el("div", undefined, { "data-key": k });
      div.append(el("dt", label(k)), el("dd", shown(v)));
      return div;
    }),
  );
}

// A list answer: {"<key>": [...], "next_cursor": ...} (serving/routes/*.py).
function rows(body, key) {
  return body && Array.isArray(body[key]) ? body[key] : [];
}

function percent(x) {
  return typeof x === "number" ? `${(x * 100).toFixed(2)} %` : null;
}

function columnsFor(list, preferred) {
  const present = new Set(list.flatMap((r) => Object.keys(r)));
  const cols = preferred.filter((k) => present.has(k));
  if (cols.length) return cols;
  return list.length ? Object.keys(list[0]).filter((k) => typeof list[0][k] !== "object") : [];
}

function table(id, list, preferred, emptyText) {
  const node = $(id);
  const cols = columnsFor(list, preferred);
  const head = el("tr");
  head.append(...cols.map((c) => el("th", label(c))));
  node.tHead.replaceChildren(head);
  const body = list.map((r) => {
    const tr = el("tr", undefined, { "data-id": r.client_order_id || r.symbol || "" });
    tr.append(...cols.map((c) => {
      const text = c.endsWith("_at") ? when(r[c]) : shown(r[c]);
      return el("td", text, { "data-col": c });
    }));
    return tr;
  });
  if (!body.length) {
    const tr = el("tr");
    tr.append(el("td", emptyText, { class: "empty", colspan: String(Math.max(cols.length, 1)) }));
    body.push(tr);
  }
  node.tBodies[0].replaceChildren(...body);
  $(`${id}-count`).textContent = `(${list.length})`;
}

// --- the token -------------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// What the panels show goes with the token that read it.
function clearPanels() {
  for (const id of ["positions", "orders"]) {
    $(id).tHead.replaceChildren();
    $(id).tBodies[0].replaceChildren();
    $(`${id}-count`).textContent = "";
  }
  for (const id of ["decisions", "metrics", "safety"]) $(id).replaceChildren();
  $("decisions-count").textContent = "";
  if (typeof Plotly !== "undefined") Plotly.purge("equity-chart");
}

function askForToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  reads.abort();
  reads = new AbortController();
  for (const timer of pending.values()) clearTimeout(timer);
  pending.clear();
  closeSocket();
  clearPanels();
  $("token-panel").hidden = false;
  $("panels").hidden = true;
  show(message || "", $("token-message"), message ? "error" : undefined);
  $("token-input").focus();
}

function saveToken(event) {
  event.preventDefault();
  const field = $("token-input");
  const value = field.value.trim();
  field.value = "";
  if (!/^tf_[A-Za-z0-9_-]+$/.test(value)) {
    show("That is not a tradeflow token (tf_<id>_<secret>).", $("token-message"), "error");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  start();
}

async function getJson(path) {
  const { signal } = reads;
  const r = await fetch(API + path, {
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
    cache: "no-store",
    signal,
  });
  if (r.status === 401) throw new TokenRefused(`token refused by ${path}`);
  if (!r.ok) {
    let detail = "";
    try {
      detail = (await r.json()).detail || "";
    } catch (_) {
      /* not JSON: the status says enough */
    }
    throw new Error(`${path}: HTTP ${r.status}${detail ? `: ${shown(detail)}` : ""}`);
  }
  const body = await r.json();
  signal.throwIfAborted();
  return body;
}

// --- the panels ------------------------------------------------------------------------------

function renderSafety(s) {
  const badge = $("trading-state");
  badge.dataset.state = s.trading_state;
  badge.textContent = String(s.trading_state).toUpperCase();
  const breaker = $("breaker");
  const tripped = Boolean(s.circuit_breaker && s.circuit_breaker.tripped);
  breaker.dataset.state = tripped ? "tripped" : "ok";
  breaker.textContent = tripped ? "breaker TRIPPED" : "breaker ok";
  const ks = s.kill_switch || {};
  const cb = s.circuit_breaker || {};
  const last = (s.accepted_requests || [])[0];
  figures($("safety"), [
    ["trading_state", String(s.trading_state).toUpperCase()],
    ["halted_by", s.halted_by ? `${s.halted_by.control}: ${shown(s.halted_by.detail)}` : null],
    ["kill_switch", ks.active ? "ACTIVE" : "off"],
    ["kill_switch_reason", ks.reason],
    ["kill_switch_changed", when(ks.changed_at)],
    ["breaker", tripped ? `TRIPPED until ${when(cb.until)}` : "ok"],
    ["breaker_reason", cb.reason],
    ["last_request", last ? `${last.action} at ${when(last.at)}: ${last.reason}` : null],
  ]);
}

async function loadSafety() {
  renderSafety(await getJson("/safety/status"));
}

async function loadPositions() {
  const list = rows(await getJson("/positions"), "positions");
  table(
    "positions",
    list,
    ["symbol", "quantity", "avg_price", "mark_price", "notional", "unrealised_pnl",
      "realised_pnl"],
    "no open position",
  );
}

async function loadOrders() {
  const pages = await Promise.all(
    OPEN_STATUSES.map((s) => getJson(`/orders?status=${s}&limit=100`)),
  );
  const list = pages.flatMap((p) => rows(p, "orders"));
  list.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  table(
    "orders",
    list,
    ["created_at", "symbol", "side", "type", "quantity", "limit_price", "status",
      "filled_quantity", "origin", "client_order_id"],
    "no open order",
  );
}

function voteItem(v) {
  const li = el("li", undefined, { "data-agent": v.agent });
  const conf = v.abstained ? "" : ` (${Number(v.confidence).toFixed(2)})`;
  li.append(el("span", v.agent, { class: "vote-agent" }), ` ${v.action}${conf}: `);
  li.append(el("span", v.reason || (v.reasons || []).join("; ") || "–", { class: "vote-reason" }));
  return li;
}

// One entry of GET /decisions: {decision, totals (of its LLM calls), calls}.
function decisionItem(entry) {
  const d = entry.decision || {};
  const totals = entry.totals || {};
  const li = el("li", undefined, { "data-decision": d.decision_id || "" });
  const head = el("div", undefined, { class: "head" });
  head.append(
    el("span", when(d.candle_time || d.decided_at), { class: "when" }),
    el("span", d.symbol, { class: "symbol" }),
    el("span", d.action, { class: "action", "data-action": d.action || "" }),
  );
  if (typeof d.score === "number") head.append(el("span", `score ${d.score.toFixed(3)}`));
  if (d.risk_approved === false) {
    const codes = (d.denials || []).map((x) => x.code || x).join(", ");
    head.append(el("span", `denied: ${codes || "by the risk gate"}`, { class: "denied" }));
  }
  if (d.client_order_id) head.append(el("span", `order ${d.client_order_id}`, { class: "order" }));
  if (totals.calls) {
    head.append(el("span", `LLM: ${totals.calls} call(s), ${totals.abstentions} abstention(s), `
      + `cost ${totals.cost}`, { class: "llm" }));
  }
  const why = el("div", d.consensus_reason || "", { class: "why" });
  const votes = el("ul", undefined, { class: "votes" });
  votes.append(...(d.votes || []).map(voteItem));
  li.append(head, why, votes);
  return li;
}

async function loadDecisions() {
  const list = rows(await getJson(`/decisions?limit=${DECISIONS_SHOWN}`), "decisions");
  $("decisions").replaceChildren(...list.slice(0, DECISIONS_SHOWN).map(decisionItem));
  $("decisions-count").textContent = `(${Math.min(list.length, DECISIONS_SHOWN)})`;
  if (!list.length) $("decisions").append(el("li", "no decision yet", { class: "empty" }));
}

function plotEquity(series) {
  if (typeof Plotly === "undefined") throw new Error("the chart library did not load");
  const x = series.map((p) => p.time);
  const equity = series.map((p) => Number(p.equity));
  const drawdown = series.map((p) => -Math.abs(Number(p.drawdown)));
  const traces = [
    { x, y: equity, name: "equity", type: "scatter", mode: "lines", line: { color: "#1f6feb" } },
    { x, y: drawdown, name: "drawdown", type: "scatter", mode: "lines", fill: "tozeroy",
      yaxis: "y2", line: { color: "#c62828" } },
  ];
  const layout = {
    margin: { l: 60, r: 20, t: 10, b: 30 },
    showlegend: true,
    legend: { orientation: "h", y: 1.08 },
    yaxis: { domain: [0.35, 1], title: { text: "equity" } },
    yaxis2: { domain: [0, 0.28], title: { text: "drawdown" }, tickformat: ".2%" },
    xaxis: { type: "date" },
  };
  Plotly.react("equity-chart", traces, layout, { displaylogo: false, responsive: true });
}

// GET /metrics/trading: money as decimal strings, ratios as numbers, drawdowns as fractions.
async function loadMetrics() {
  const m = await getJson("/metrics/trading");
  const ratio = (x) => (typeof x === "number" ? x.toFixed(2) : null);
  figures($("metrics"), [
    ["equity", m.equity],
    ["pnl", m.pnl],
    ["realised", m.realised],
    ["unrealised", m.unrealised],
    ["fees", m.fees],
    ["max_drawdown", percent(m.max_drawdown)],
    ["current_drawdown", percent(m.current_drawdown)],
    ["sharpe", ratio(m.sharpe)],
    ["sortino", ratio(m.sortino)],
    ["win_rate", percent(m.win_rate)],
    ["trades", m.trades],
  ]);
  plotEquity(Array.isArray(m.equity_curve) ? m.equity_curve : []);
}

const LOADERS = {
  safety: loadSafety,
  positions: loadPositions,
  orders: loadOrders,
  decisions: loadDecisions,
  metrics: loadMetrics,
};
const pending = new Map();

async function load(panel) {
  try {
    await LOADERS[panel]();
    panelError(panel === "metrics" ? "equity" : panel, "");
  } catch (e) {
    if (e.name === "AbortError") return; // the token was forgotten meanwhile: nothing to show
    if (e instanceof TokenRefused) {
      askForToken("The token was refused (unknown, revoked or expired): enter another.");
      return;
    }
    panelError(panel === "metrics" ? "equity" : panel, `Could not load: ${e.message}`);
  }
}

function refresh(panel) {
  if (pending.has(panel) || !token()) return;
  pending.set(
    panel,
    setTimeout(() => {
      pending.delete(panel);
      load(panel);
    }, REFRESH_DELAY_MS),
  );
}

function loadAll() {
  return Promise.all(Object.keys(LOADERS).map(load));
}

// --- live: the WebSocket -----------------------------------------------------------------------

const live = { socket: null, retryMs: 1000, timer: null, poll: null, reconnect: false };

function liveBadge(state, title) {
  const badge = $("live");
  badge.dataset.state = state;
  badge.textContent = state;
  if (title) badge.title = title;
}

// A metrics.updated snapshot (the ledger's counts and the trading state, every few seconds):
// the metrics are read again when the counts changed or they are old; the trading state when
// the snapshot's differs from the badge's.
const snapshot = { text: null, at: 0 };

function onMetrics(data) {
  const text = JSON.stringify(data || {});
  if (text !== snapshot.text || Date.now() - snapshot.at > METRICS_MAX_AGE_MS) {
    snapshot.text = text;
    snapshot.at = Date.now();
    refresh("metrics");
  }
  if (data && data.trading_state && data.trading_state !== $("trading-state").dataset.state) {
    refresh("safety");
  }
}

function onMessage(event) {
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch (_) {
    return;
  }
  if (msg.type === "event" && msg.channel === "metrics") onMetrics(msg.data);
  else if (msg.type === "event" && STALE[msg.channel]) STALE[msg.channel].forEach(refresh);
  else if (msg.type === "heartbeat") liveBadge("live", `last heartbeat ${when(msg.time)}`);
  else if (msg.type === "subscribed") liveBadge("live", `subscribed: ${msg.channels}`);
}

function openSocket() {
  if (!token() || live.socket) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}${API}/ws?token=${encodeURIComponent(token())}`;
  const socket = new WebSocket(url);
  live.socket = socket;
  liveBadge("connecting");
  socket.onopen = () => {
    live.retryMs = 1000;
    socket.send(JSON.stringify({ op: "subscribe", channels: CHANNELS }));
    if (live.reconnect) loadAll(); // whatever changed while the socket was down
    live.reconnect = true;
  };
  socket.onmessage = onMessage;
  socket.onclose = (e) => {
    if (live.socket !== socket) return;
    live.socket = null;
    liveBadge("offline", `closed (${e.code}${e.reason ? `: ${e.reason}` : ""}); retrying`);
    live.timer = setTimeout(openSocket, live.retryMs);
    live.retryMs = Math.min(live.retryMs * 2, RECONNECT_MAX_MS);
  };
}

function closeSocket() {
  clearTimeout(live.timer);
  clearInterval(live.poll);
  live.poll = null;
  live.reconnect = false;
  const socket = live.socket;
  live.socket = null;
  if (socket) socket.close(1000, "token forgotten");
  liveBadge("offline");
}

function start() {
  $("token-panel").hidden = true;
  $("panels").hidden = false;
  show("", $("token-message"));
  loadAll();
  openSocket();
  // The trading state is what an operator must never see stale: polled whenever the
  // WebSocket is not live.
  live.poll = setInterval(() => {
    if (!live.socket || live.socket.readyState !== WebSocket.OPEN) refresh("safety");
  }, POLL_MS);
}

// --- the kill switch ---------------------------------------------------------------------------

async function hmacHex(secret, message) {
  const utf8 = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, utf8.encode(message));
  return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
}

function answerText(status, body, action) {
  if (status === 200 && action === "activate") {
    const failures = (body.failures || []).length;
    return `Kill switch ACTIVE: trading halted; ${body.cancelled_orders ?? 0} order(s) cancelled, `
      + `${body.closing_orders ?? 0} closing order(s)`
      + (failures ? `; ${failures} FAILURE(S): ${body.failures.join("; ")}` : "");
  }
  if (status === 200) return "Kill switch released: trading may resume.";
  return `Refused (HTTP ${status}): ${body && body.detail ? shown(body.detail) : shown(body)}`;
}

async function sendKillSwitch(event) {
  event.preventDefault();
  const action = $("kill-form").querySelector('input[name="action"]:checked').value;
  const reason = $("kill-reason").value.trim();
  const secretField = $("kill-secret");
  const secret = secretField.value;
  secretField.value = ""; // dropped now: only the signature leaves the page
  const answer = $("kill-answer");
  $("kill-answer-body").textContent = "";
  if (!reason || !secret) {
    show("A reason and the secret are both needed.", answer, "error");
    return;
  }
  const timestamp = String(Math.floor(Date.now() / 1000));
  const submit = $("kill-submit");
  submit.disabled = true;
  show("Signing and sending…", answer);
  try {
    const signature = await hmacHex(secret, `${action}:${timestamp}`);
    const r = await fetch(`${API}/safety/kill-switch`, {
      method: "POST",
      cache: "no-store",
      headers: {
        "Content-Type": "application/json",
        "X-Kill-Switch-Timestamp": timestamp,
        "X-Kill-Switch-Signature": signature,
      },
      body: JSON.stringify({ action, reason }),
    });
    const text = await r.text();
    let body;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = text;
    }
    show(answerText(r.status, body, action), answer, r.status === 200 ? "ok" : "error");
    $("kill-answer-body").textContent = JSON.stringify(body, null, 2);
  } catch (e) {
    show(`Not sent: ${e.message}`, answer, "error");
  } finally {
    submit.disabled = false;
    STALE.safety.forEach(refresh); // the state flips here even if the WebSocket is down
  }
}

function openKillDialog() {
  show("", $("kill-answer"));
  $("kill-answer-body").textContent = "";
  $("kill-dialog").showModal();
  $("kill-reason").focus();
}

function setUpKillSwitch() {
  // WebCrypto exists only in a secure context: https, or http on localhost / 127.0.0.1.
  if (!window.isSecureContext || !window.crypto || !crypto.subtle) {
    const note = $("kill-unsupported");
    note.hidden = false;
    show("This browser cannot sign here: open the dashboard over https (or on localhost).",
      note, "error");
    $("kill-submit").disabled = true;
  }
  $("kill-open").addEventListener("click", openKillDialog);
  $("kill-cancel").addEventListener("click", () => {
    $("kill-secret").value = "";
    $("kill-dialog").close();
  });
  $("kill-dialog").addEventListener("close", () => {
    $("kill-secret").value = "";
  });
  $("kill-form").addEventListener("submit", sendKillSwitch);
}

function main() {
  $("token-form").addEventListener("submit", saveToken);
  $("token-forget").addEventListener("click", () => askForToken("Token forgotten."));
  setUpKillSwitch();
  if (token()) start();
  else askForToken();
}

main();
