// The monitor's dashboard: pages drawn from the monitor's own API (relative URLs, so
// it works under any url_prefix), redrawn when the live feed says something changed.
"use strict";

const LOADED_AT = Date.now();
window.hippoLoadedAt = LOADED_AT;

const state = { offset: 0, limit: 20, filter: { state: "", taskname: "", search: "" } };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function showError(message) {
  const p = document.getElementById("error");
  p.textContent = message || "";
  p.hidden = !message;
}

async function api(path, options) {
  const res = await fetch(path, Object.assign({ headers: { accept: "application/json" } }, options));
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch (_) { body = text; }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
}

async function act(path, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    const r = await api(path, { method: "POST" });
    showError("");
    if (r && r.message) flash(r.message);
    render();
  } catch (e) { showError(e.message); }
}

function flash(message) {
  const live = document.getElementById("live");
  live.title = message;
}

function time(secs) {
  return secs ? new Date(secs * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
}

function duration(secs) {
  if (secs == null) return "";
  const s = Math.floor(secs), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map(h => el("th", { class: h.num ? "num" : "" }, h.label || h)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

async function workersPage(main) {
  const workers = await api("api/workers");
  const rows = Object.entries(workers).map(([name, w]) => {
    const r = w.registry || {};
    const q = encodeURIComponent(name);
    return el("tr", { dataset: { worker: name, status: w.status ? "online" : "offline" }, class: w.status ? "" : "offline" },
      el("td", {}, name),
      el("td", { class: w.status ? "status-online" : "status-offline" }, w.status ? "online" : `offline since ${time(r.heartbeat_at / 1000)}`),
      el("td", { class: "num" }, String(r.active ?? (w.active || []).length)),
      el("td", { class: "num" }, String((r.succeeded || 0) + (r.failed || 0) + (r.revoked || 0) + (r.rejected || 0))),
      el("td", { class: "num" }, String(r.failed ?? 0)),
      el("td", { class: "num" }, String(r.succeeded ?? 0)),
      el("td", { class: "num" }, String(r.retried ?? 0)),
      el("td", { class: "num" }, w.stats.rusage && w.stats.rusage.maxrss ? `${Math.round(w.stats.rusage.maxrss / 1024)} MiB` : ""),
      el("td", {}, duration(w.stats.uptime)),
      el("td", {}, `${w.stats.pool.implementation} × ${w.stats.pool["max-concurrency"]}`),
      el("td", {}, (w.active_queues || []).map(x => x.name).join(", ")),
      el("td", {}, !w.status ? "" : el("span", {},
        el("button", { onclick: () => act(`api/worker/pool/grow/${q}?n=1`) }, "+1"), " ",
        el("button", { onclick: () => act(`api/worker/pool/shrink/${q}?n=1`) }, "−1"), " ",
        el("button", { onclick: () => act(`api/worker/pool/restart/${q}`) }, "restart pool"), " ",
        el("button", { onclick: () => act(`api/worker/shutdown/${q}`, `Shut ${name} down?`) }, "shut down"))));
  });
  const online = Object.values(workers).filter(w => w.status).length;
  main.replaceChildren(el("h2", {}, `Workers (${online} online, ${rows.length - online} offline)`),
    table(["Worker", "Status", { label: "Active", num: 1 }, { label: "Processed", num: 1 }, { label: "Failed", num: 1 },
      { label: "Succeeded", num: 1 }, { label: "Retried", num: 1 }, { label: "Memory", num: 1 }, "Uptime", "Pool", "Queues", ""], rows));
}

function taskQuery() {
  const p = new URLSearchParams({ limit: state.limit + 1, offset: state.offset });
  for (const [k, v] of Object.entries(state.filter)) if (v) p.set(k, v);
  return p.toString();
}

async function tasksPage(main) {
  const tasks = await api(`api/tasks?${taskQuery()}`);
  const entries = Object.entries(tasks);
  const more = entries.length > state.limit;
  const rows = entries.slice(0, state.limit).map(([id, t]) => el("tr", { dataset: { taskId: id, state: t.state } },
    el("td", {}, el("a", { href: `#/task/${encodeURIComponent(id)}` }, id)),
    el("td", {}, t.name),
    el("td", { class: `state state-${t.state}` }, t.state),
    el("td", {}, t.worker || ""),
    el("td", { class: "num" }, String(t.retries ?? "")),
    el("td", {}, t.result ?? t.exception ?? ""),
    el("td", {}, time(t.timestamp))));
  const input = (key, placeholder) => el("input", { value: state.filter[key], placeholder, onchange: e => { state.filter[key] = e.target.value.trim(); state.offset = 0; render(); } });
  const select = el("select", { onchange: e => { state.filter.state = e.target.value; state.offset = 0; render(); } },
    ...["", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED", "REJECTED"].map(s => {
      const o = el("option", { value: s }, s || "All states");
      if (s === state.filter.state) o.selected = true;
      return o;
    }));
  const pager = el("div", { class: "pager" },
    el("button", { onclick: () => { state.offset = Math.max(0, state.offset - state.limit); render(); } }, "← newer"),
    el("span", { class: "muted" }, `${state.offset + 1}–${state.offset + rows.length}`),
    el("button", { onclick: () => { if (more) { state.offset += state.limit; render(); } } }, "older →"));
  main.replaceChildren(el("h2", {}, "Tasks"),
    el("div", { class: "filters" }, select, input("taskname", "task name"), input("search", "search: name:x state:FAILURE \"text\"")),
    table(["Task id", "Name", "State", "Worker", { label: "Retries", num: 1 }, "Result", "Time (UTC)"], rows), pager);
}

function timelineTable(tl) {
  const rows = tl.events.map(e => el("tr", { dataset: { event: e.type } },
    el("td", {}, time(e.timestamp)),
    el("td", { class: "event" }, e.type),
    el("td", {}, e.worker || ""),
    el("td", {}, [e.retries != null ? `retries ${e.retries}` : "", e.runtime != null ? `runtime ${e.runtime.toFixed(3)}s` : "",
      e.exception || "", e.operator ? `${e.operator.action} by ${e.operator.who}` : ""].filter(Boolean).join(" · "))));
  const note = tl.complete ? "" : `older events not searched (the newest ${tl.scanned} of the stream were)`;
  return [el("h3", {}, "Timeline"), table(["Time (UTC)", "Event", "Worker", "Details"], rows),
    note ? el("p", { class: "muted" }, note) : ""];
}

function actionsTable(tl) {
  const rows = tl.actions.map(a => el("tr", { dataset: { action: a.operator.action } },
    el("td", {}, time(a.timestamp)), el("td", {}, a.operator.who), el("td", {}, a.operator.from),
    el("td", {}, a.operator.action), el("td", {}, a.operator.detail)));
  return [el("h3", {}, "Operator actions"),
    rows.length ? table(["Time (UTC)", "Who", "From", "Action", "Detail"], rows) : el("p", { class: "muted", id: "no-actions" }, "none")];
}

async function taskPage(main, id) {
  const [t, tl] = await Promise.all([api(`api/task/info/${encodeURIComponent(id)}`),
    api(`api/task/timeline/${encodeURIComponent(id)}`)]);
  const q = encodeURIComponent(id);
  const fields = ["uuid", "name", "state", "worker", "routing_key", "retries", "received", "started", "succeeded", "failed", "retried", "revoked", "args", "kwargs", "result", "exception"];
  const dl = el("dl", { class: "fields" }, ...fields.flatMap(f => {
    let v = t[f];
    if (["received", "started", "succeeded", "failed", "retried", "revoked"].includes(f)) v = time(v);
    return [el("dt", {}, f), el("dd", { dataset: { field: f }, class: f === "state" ? `state state-${v}` : "" }, v == null ? "" : String(v))];
  }));
  main.replaceChildren(el("h2", {}, `Task ${t.name}`),
    el("p", {},
      el("button", { onclick: () => act(`api/task/revoke/${q}`, "Revoke this task?") }, "Revoke"), " ",
      el("button", { onclick: () => act(`api/task/revoke/${q}?terminate=true`, "Terminate this task where it runs?") }, "Terminate"), " ",
      el("button", { id: "retry", onclick: () => act(`api/task/retry/${q}`) }, "Retry")),
    dl, t.traceback ? el("pre", { dataset: { field: "traceback" } }, t.traceback) : "",
    ...timelineTable(tl), ...actionsTable(tl));
}

async function queuesPage(main) {
  const q = await api("api/queues/length");
  const rows = q.active_queues.map(x => el("tr", { dataset: { queue: x.name } },
    el("td", {}, x.name),
    el("td", { class: "num" }, String(x.messages)),
    el("td", {}, x.waiting_by_priority.map((n, p) => {
      const age = (x.oldest_waiting_seconds_by_priority || [])[p];
      return n ? `p${p}: ${n}` + (age != null ? ` (oldest ${duration(age)})` : "") : "";
    }).filter(Boolean).join(", ")),
    el("td", { class: "num", dataset: { field: "oldest" } }, x.oldest_waiting_seconds == null ? "" : duration(x.oldest_waiting_seconds)),
    el("td", { class: "num" }, String(x.delayed)),
    el("td", { class: "num" }, String(x.reserved)),
    el("td", { class: "num" }, String(x.dead_letter)),
    el("td", {}, x.paused ? "paused" : "consuming"),
    el("td", {}, x.paused
      ? el("button", { onclick: () => act(`api/queue/resume/${encodeURIComponent(x.name)}`) }, "resume")
      : el("button", { onclick: () => act(`api/queue/pause/${encodeURIComponent(x.name)}`) }, "pause"))));
  main.replaceChildren(el("h2", {}, "Queues"),
    table(["Queue", { label: "Waiting", num: 1 }, "By priority", { label: "Oldest waiting", num: 1 }, { label: "Delayed", num: 1 }, { label: "Reserved", num: 1 }, { label: "Dead letters", num: 1 }, "State", ""], rows));
}

async function beatPage(main) {
  const b = await api("api/beat");
  const rows = b.entries.map(e => el("tr", { dataset: { entry: e.name } },
    el("td", {}, e.name), el("td", {}, e.task), el("td", {}, e.schedule), el("td", {}, String(e.missed)),
    el("td", {}, time(e.last_run)), el("td", {}, e.next_run == null ? "ended" : time(e.next_run)),
    el("td", { class: "num", dataset: { field: "runs" } }, e.total_run_count == null ? "" : String(e.total_run_count))));
  const leader = b.leader ? `led by ${b.leader.beat_id}` : "no leader";
  main.replaceChildren(el("h2", {}, "Beat"),
    el("p", { id: "beat-state", class: b.running ? "" : "muted" }, b.running ? `running, ${leader}` : "not running (no scheduler published its status lately)"),
    table(["Entry", "Task", "Schedule", "Missed ticks", "Last run (UTC)", "Next run (UTC)", { label: "Total runs", num: 1 }], rows));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

// Bars, stacked by series: series = [{ values, color, label }], labels under the bars.
function barChart(title, labels, series, kind) {
  const W = 420, H = 150, top = 18, bottom = 28, left = 34, right = 6;
  const n = labels.length, plotW = W - left - right, plotH = H - top - bottom;
  const totals = labels.map((_, i) => series.reduce((a, s) => a + (s.values[i] || 0), 0));
  const max = Math.max(1, ...totals);
  const bw = plotW / n;
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", "data-chart": kind, role: "img" },
    svg("title", {}, title),
    svg("text", { x: left, y: 12, class: "chart-title" }, title),
    svg("line", { x1: left, y1: top + plotH, x2: W - right, y2: top + plotH, stroke: "#9aa3b5" }),
    svg("text", { x: left - 4, y: top + 8, "text-anchor": "end", class: "chart-axis" }, max),
    svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end", class: "chart-axis" }, 0));
  labels.forEach((label, i) => {
    let y = top + plotH;
    for (const s of series) {
      const v = s.values[i] || 0;
      if (!v) continue;
      const h = (v / max) * plotH;
      y -= h;
      g.append(svg("rect", { x: left + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: s.color },
        svg("title", {}, `${label}: ${v} ${s.label}`)));
    }
    const every = Math.ceil(n / 8);
    if (i % every === 0) g.append(svg("text", { x: left + i * bw + bw / 2, y: H - 14, "text-anchor": "middle", class: "chart-axis" }, label));
  });
  const legend = svg("g", {});
  series.forEach((s, i) => {
    legend.append(svg("rect", { x: W - right - 150 + i * 75, y: H - 10, width: 8, height: 8, fill: s.color }));
    legend.append(svg("text", { x: W - right - 138 + i * 75, y: H - 2, class: "chart-axis" }, s.label));
  });
  g.append(legend);
  return g;
}

async function chartsPage(main) {
  const st = await api("api/task/stats");
  const names = Object.keys(st.tasks);
  const since = st.since ? `since ${time(st.since)}` : "";
  const note = `From the newest ${st.scanned} events of the stream ${since}${st.complete ? "" : " (older events not read)"}.`;
  const buckets = st.runtime_buckets.map(b => `≤${b}`).concat([`>${st.runtime_buckets[st.runtime_buckets.length - 1]}`]);
  const minutes = st.tasks[names[0]] ? st.tasks[names[0]].rate.succeeded.map((_, i, a) => `-${a.length - 1 - i}m`) : [];
  const sections = names.map(name => {
    const t = st.tasks[name];
    const total = t.succeeded + t.failed;
    const ratio = total ? `${(100 * t.failed / total).toFixed(1)}% failed` : "";
    return el("section", { class: "task-charts", dataset: { taskType: name } },
      el("h3", {}, `${name} `, el("span", { class: "muted" }, `${t.succeeded} succeeded, ${t.failed} failed, ${t.retried} retried ${ratio}`)),
      barChart("succeeded and failed per minute", minutes,
        [{ values: t.rate.succeeded, color: "#2e9d5b", label: "succeeded" }, { values: t.rate.failed, color: "#c9372c", label: "failed" }], "rate"),
      barChart("runtime (seconds)", buckets, [{ values: t.runtime.counts, color: "#3d7bd9", label: "tasks" }], "runtime"));
  });
  main.replaceChildren(el("h2", {}, "Charts"), el("p", { class: "muted" }, note),
    ...(sections.length ? sections : [el("p", { class: "muted" }, "No finished task in the events read (workers publish task events with task_events(true), Celery's -E).")]));
}

let rendering = Promise.resolve();
function render() {
  rendering = rendering.then(async () => {
    const hash = location.hash || "#/workers";
    const [, page, arg] = hash.split("/");
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.page === page);
    const main = document.getElementById("main");
    try {
      if (page === "tasks") await tasksPage(main);
      else if (page === "task") await taskPage(main, decodeURIComponent(arg || ""));
      else if (page === "queues") await queuesPage(main);
      else if (page === "beat") await beatPage(main);
      else if (page === "charts") await chartsPage(main);
      else await workersPage(main);
      showError("");
      document.body.dataset.rendered = String(Date.now());
    } catch (e) { showError(e.message); }
  });
  return rendering;
}

function live() {
  const badge = document.getElementById("live");
  const source = new EventSource("api/live");
  source.addEventListener("open", () => { badge.textContent = "live"; badge.className = "live on"; });
  source.addEventListener("change", () => render());
  source.addEventListener("error", () => { badge.textContent = "reconnecting"; badge.className = "live off"; });
}

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", () => { render(); live(); });
