// The tracker dashboard: plain DOM, no framework, no build step.
//
// Data flow: GET /stats and GET /jobs fill the page; one EventSource on /events
// then keeps it current in place (a row per jid, updated from each `track` event).
// The list is fetched again only when a filter changes or the stream reconnects.
// Job data only ever reaches the page through textContent and setAttribute.
(() => {
  "use strict";

  const STATES = ["waiting", "paused", "enqueued", "working", "failed", "success", "dead", "cancelled"];
  const TERMINAL = new Set(["success", "dead", "cancelled"]);
  const SHOWN_ARGS = 160; // characters of a payload's arguments shown before "…"
  const PAGE = 100; // jobs per fetch
  const MAX_ROWS = 1000; // live inserts beyond this drop the oldest rows
  const GRAPH_SIDE = 8; // nodes drawn per side of the graph
  const WORKFLOW_COLUMN = 12; // jobs drawn per column of a workflow
  const STATS_EVERY = 500; // ms: counts are fetched at most this often while events flow
  const WORKERS_EVERY = 2000; // ms: workers say what they run in beats, not in events
  const SVG = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "tracker-token"; // this tab's token, kept until the tab closes
  const token = keepToken();

  /** The token the token page sent (?token=), or the one this tab kept. It is kept in
   * sessionStorage and taken out of the address bar, so it is in no history or link. */
  function keepToken() {
    const params = new URLSearchParams(location.search);
    const given = params.get("token");
    if (given === null) return sessionStorage.getItem(TOKEN_KEY);
    sessionStorage.setItem(TOKEN_KEY, given);
    params.delete("token");
    const search = params.toString();
    history.replaceState(null, "", location.pathname + (search ? `?${search}` : "") + location.hash);
    return given;
  }

  /** A read was refused (401, or 403: a token changed since): back to the token page,
   * which says which and asks again. */
  function askForToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    location.replace(`./${token ? `?token=${encodeURIComponent(token)}` : ""}${location.hash}`);
  }

  // --- DOM helpers -----------------------------------------------------------

  /** An element; string and number children become text nodes, never markup. */
  function h(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return build(document.createElementNS(SVG, tag), attrs, children);
  }

  function build(el, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const $ = (selector) => document.querySelector(selector);

  // --- the API -----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  let clockSkew = 0; // server clock minus ours, when they differ by more than the Date header's 1 s

  async function api(path, params) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(params || {})) {
      if (value) url.searchParams.set(name, value);
    }
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(url, { headers, cache: "no-store" });
    const date = Date.parse(response.headers.get("date") || "");
    if (!Number.isNaN(date)) {
      const skew = date - Date.now();
      clockSkew = Math.abs(skew) > 2000 ? skew : 0;
    }
    if (response.status === 401 || response.status === 403) askForToken();
    if (!response.ok) throw await problemOf(response);
    return response.json();
  }

  async function problemOf(response) {
    let detail = response.statusText;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch {
      // not a problem+json body: keep the status text
    }
    return new ApiError(response.status, detail);
  }

  /** A write: POST with an empty JSON object, as a same-origin JSON request. */
  async function post(path) {
    const headers = { Accept: "application/json", "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(new URL(path, document.baseURI), { method: "POST", headers, body: "{}", cache: "no-store" });
    if (!response.ok) throw await problemOf(response);
    return response.json();
  }

  const jobPath = (jid) => `jobs/${encodeURIComponent(jid)}`;

  // --- time --------------------------------------------------------------------

  function ago(iso) {
    const then = Date.parse(iso);
    if (Number.isNaN(then)) return "";
    const seconds = Math.max(0, Math.floor((Date.now() + clockSkew - then) / 1000));
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  function timeAgo(iso) {
    return h("time", { class: "ago", datetime: iso, title: `${localTime(iso)} (${iso})` }, ago(iso));
  }

  function tick() {
    for (const el of document.querySelectorAll("time.ago")) {
      const text = ago(el.getAttribute("datetime"));
      if (el.textContent !== text) el.textContent = text;
    }
  }

  function localTime(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  // --- shared pieces -------------------------------------------------------------

  function badge(state) {
    return h("span", { class: `badge s-${state}` }, state);
  }

  function progress() {
    const fill = h("span", { class: "fill" });
    const bar = h("span", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, fill);
    const text = h("span", { class: "pct" });
    return { el: h("span", { class: "progress" }, bar, text), bar, fill, text };
  }

  function setProgress(p, track) {
    // a success that never reported a percent is complete all the same
    const known = Number.isInteger(track.percent) || track.state === "success";
    const percent = Number.isInteger(track.percent) ? Math.min(100, Math.max(0, track.percent)) : known ? 100 : 0;
    p.el.className = `progress s-${track.state}${known ? "" : " unset"}`;
    p.fill.style.width = `${percent}%`;
    if (known) p.bar.setAttribute("aria-valuenow", String(percent));
    else p.bar.removeAttribute("aria-valuenow");
    p.text.textContent = known ? `${percent}%` : "–";
  }

  function attempts(track) {
    if (track.attempts === undefined) return "";
    return track.max_attempts ? `${track.attempts}/${track.max_attempts}` : String(track.attempts);
  }

  /** "ValueError: it broke" of a track's newest error. */
  function errorText(track) {
    const e = track.error || (track.errors && track.errors[0]);
    if (!e) return "";
    return e.type ? `${e.type}: ${e.message}` : e.message;
  }

  function jobLink(jid, state) {
    return h(
      "button",
      { type: "button", class: "job-link", title: state ? `${jid} (${state})` : jid, onclick: () => openDetail(jid) },
      state ? h("span", { class: `dot s-${state}`, "aria-hidden": "true" }) : null,
      h("span", { class: "mono" }, jid),
      state ? h("span", { class: "sr-only" }, ` ${state}`) : null,
    );
  }

  // --- filters and the URL -------------------------------------------------------

  const view = { state: "", queue: "", label: "", parent: "" };
  const form = $("#filters");

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    for (const name of Object.keys(view)) view[name] = params.get(name) || "";
    return params.get("job") || "";
  }

  function writeHash() {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(view)) if (value) params.set(name, value);
    if (detail.jid) params.set("job", detail.jid);
    const hash = params.toString();
    history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
  }

  function matches(track) {
    if (view.state && track.state !== view.state) return false;
    if (view.queue && track.queue !== view.queue) return false;
    if (view.parent && track.parent !== view.parent) return false;
    if (view.label) {
      // KEY=VALUE (the first = splits), or KEY:VALUE where there is no =, as the API reads it
      const at = view.label.includes("=") ? view.label.indexOf("=") : view.label.indexOf(":");
      const key = view.label.slice(0, at);
      if (!track.labels || track.labels[key] !== view.label.slice(at + 1)) return false;
    }
    return true;
  }

  function setFilter(changes) {
    Object.assign(view, changes);
    syncForm();
    writeHash();
    renderChips();
    loadList();
  }

  function syncForm() {
    ensureQueueOption(view.queue);
    form.queue.value = view.queue;
    form.label.value = view.label;
    form.parent.value = view.parent;
  }

  function ensureQueueOption(queue) {
    if (!queue || [...form.queue.options].some((o) => o.value === queue)) return;
    form.queue.append(h("option", { value: queue }, queue));
  }

  // --- counts: state chips and queue bars --------------------------------------------

  let stats = { states: {}, queues: {} };
  const chips = new Map(); // state ("" for all) -> its count element

  function makeChips() {
    const box = $("#chips");
    for (const state of ["", ...STATES]) {
      const count = h("span", { class: "count" }, "0");
      const chip = h(
        "button",
        {
          type: "button",
          class: `chip ${state ? `s-${state}` : "s-all"}`,
          "data-state": state || "all",
          "aria-pressed": "false",
          onclick: () => setFilter({ state: view.state === state ? "" : state }),
        },
        h("span", { class: "dot", "aria-hidden": "true" }),
        h("span", { class: "name" }, state || "all"),
        count,
      );
      chips.set(state, { chip, count });
      box.append(chip);
    }
  }

  function renderChips() {
    const counts = view.queue ? stats.queues[view.queue] || {} : stats.states;
    let total = 0;
    for (const state of STATES) {
      const n = counts[state] || 0;
      total += n;
      chips.get(state).count.textContent = String(n);
      chips.get(state).chip.classList.toggle("empty", n === 0);
    }
    chips.get("").count.textContent = String(total);
    for (const [state, { chip }] of chips) {
      chip.setAttribute("aria-pressed", String(view.state === state));
    }
  }

  function renderQueues() {
    const names = Object.keys(stats.queues).sort();
    for (const name of names) ensureQueueOption(name);
    const box = $("#queues");
    if (!names.length) {
      box.replaceChildren(h("p", { class: "muted" }, "No queues yet."));
      return;
    }
    const totals = names.map((name) => Object.values(stats.queues[name]).reduce((a, b) => a + b, 0));
    const widest = Math.max(1, ...totals);
    box.replaceChildren(
      ...names.map((name, i) => {
        const counts = stats.queues[name];
        const segments = STATES.filter((s) => counts[s]).map((s) =>
          h("span", { class: `segment s-${s}`, style: `flex-grow:${counts[s]}`, title: `${s}: ${counts[s]}` }),
        );
        const summary = STATES.filter((s) => counts[s]).map((s) => `${s} ${counts[s]}`).join(", ");
        return h(
          "button",
          {
            type: "button",
            class: "queue",
            "aria-pressed": String(view.queue === name),
            title: `${name}: ${summary || "empty"}`,
            onclick: () => setFilter({ queue: view.queue === name ? "" : name }),
          },
          h("span", { class: "queue-name mono" }, name),
          h(
            "span",
            { class: "stack-track" },
            h("span", { class: "stack", style: `width:${(100 * totals[i]) / widest}%` }, segments),
          ),
          h("span", { class: "queue-total" }, String(totals[i])),
        );
      }),
    );
  }

  let statsTimer = null;

  // --- workers -----------------------------------------------------------------------

  async function loadWorkers() {
    let found;
    try {
      ({ workers: found } = await api("workers"));
    } catch (error) {
      $("#workers").replaceChildren(h("p", { class: "muted" }, `Workers unavailable: ${error.message}`));
      return;
    }
    const box = $("#workers");
    if (!found.length) {
      box.replaceChildren(h("p", { class: "muted" }, "No worker has beaten lately."));
      return;
    }
    box.replaceChildren(
      ...found.map((w) =>
        h(
          "div",
          { class: `worker w-${w.state}`, title: `${w.host}, pid ${w.pid}, up since ${localTime(w.started_at)}` },
          h("span", { class: "worker-state" }, h("span", { class: "dot", "aria-hidden": "true" }), w.state),
          h("span", { class: "worker-name mono" }, w.name),
          h("span", { class: "worker-job" }, w.job ? jobLink(w.job) : h("span", { class: "muted" }, "no job")),
          h(
            "span",
            { class: "worker-meta muted" },
            h("span", { class: "worker-queues" }, w.queues.join(", ")),
            ` · ${w.done} done, ${w.failed} failed · beat `,
            timeAgo(w.heartbeat_at),
          ),
        ),
      ),
    );
  }

  async function loadStats() {
    try {
      stats = await api("stats");
    } catch (error) {
      showBanner(`Counts unavailable: ${error.message}`);
      return;
    }
    renderChips();
    renderQueues();
  }

  function scheduleStats() {
    if (statsTimer === null) {
      statsTimer = setTimeout(() => {
        statsTimer = null;
        loadStats();
      }, STATS_EVERY);
    }
  }

  // --- the jobs table ----------------------------------------------------------------

  const tbody = $("#jobs tbody");
  const rows = new Map(); // jid -> {track, tr, cells}
  let cursor = null; // the list's `next`
  let listing = 0; // the newest list request; older answers are dropped
  let held = null; // events that arrived while the list was being fetched
  let loaded = false; // whether a list has come in yet

  function makeRow(track) {
    const jid = h("span", { class: "mono jid" });
    const meta = h("span", { class: "meta" });
    const p = progress();
    const cells = {
      jid,
      meta,
      state: h("td", { class: "c-state" }),
      queue: h("td", { class: "c-queue mono" }),
      progress: p,
      desc: h("td", { class: "c-desc" }),
      attempts: h("td", { class: "c-attempts num" }),
      updated: h("td", { class: "c-updated" }),
    };
    const pick = h("input", {
      type: "checkbox",
      class: "pick",
      "aria-label": `Select ${track.jid}`,
      checked: picked.has(track.jid),
      onclick: (e) => {
        e.stopPropagation(); // picking a row does not open it
        setPicked(track.jid, e.target.checked);
      },
    });
    const tr = h(
      "tr",
      {
        "data-jid": track.jid,
        tabindex: 0,
        onclick: () => openDetail(track.jid),
        onkeydown: (e) => e.key === "Enter" && e.target === tr && openDetail(track.jid),
      },
      h("td", { class: "c-jid" }, pick, jid, meta),
      cells.state,
      cells.queue,
      h("td", { class: "c-progress" }, p.el),
      cells.desc,
      cells.attempts,
      cells.updated,
    );
    const row = { track, tr, cells };
    fillRow(row);
    return row;
  }

  function fillRow(row) {
    const { track, cells, tr } = row;
    tr.dataset.state = track.state;
    tr.classList.toggle("selected", track.jid === detail.jid);
    cells.jid.textContent = track.jid;
    const meta = [];
    if (track.batch) meta.push(h("span", { class: "tag" }, `batch ${track.batch.success}/${track.batch.total}`));
    if (track.parent) meta.push(h("span", { class: "tag" }, `in ${track.parent}`));
    for (const [key, value] of Object.entries(track.labels || {})) {
      meta.push(h("span", { class: "tag label" }, `${key}=${value}`));
    }
    cells.meta.replaceChildren(...meta);
    cells.state.replaceChildren(badge(track.state));
    cells.queue.textContent = track.queue || "";
    setProgress(cells.progress, track);
    const failure = (track.state === "failed" || track.state === "dead") && errorText(track);
    cells.desc.replaceChildren(
      ...(failure
        ? [
            h("span", { class: "row-error" }, failure),
            h("span", { class: "row-attempt" }, ` · attempt ${attempts(track)}`),
            track.desc ? h("span", { class: "muted" }, ` · ${track.desc}`) : "",
          ]
        : [track.desc || ""]),
    );
    cells.desc.title = failure ? `${failure} (attempt ${attempts(track)})${track.desc ? `\n${track.desc}` : ""}` : track.desc || "";
    cells.attempts.textContent = attempts(track);
    cells.updated.replaceChildren(track.updated_at ? timeAgo(track.updated_at) : "");
  }

  function flash(tr) {
    // the Web Animations API restarts without forcing a layout per event
    tr.animate([{ backgroundColor: "rgb(37 99 235 / 16%)" }, { backgroundColor: "transparent" }], {
      duration: 1200,
      easing: "ease-out",
    });
  }

  function renderEmpty() {
    const old = tbody.querySelector("tr.empty");
    if (rows.size && old) old.remove();
    if (old && rows.size === 0 && old.dataset.loaded !== String(loaded)) old.remove();
    if (!rows.size && !tbody.querySelector("tr.empty")) {
      const filtered = Object.values(view).some(Boolean);
      const text = !loaded ? "Loading jobs…" : filtered ? "No job matches these filters." : "No jobs yet.";
      tbody.append(h("tr", { class: "empty", "data-loaded": String(loaded) }, h("td", { colspan: 7 }, text)));
    }
    $("#shown").textContent = `${rows.size} shown`;
    $("#more").hidden = !cursor;
    prunePicked(); // rows that left the table leave the selection
  }

  // --- acting on many jobs at once --------------------------------------------------

  const picked = new Set(); // jids of the rows picked for a bulk action
  const BULK_AT_ONCE = 4; // requests in flight at once
  const bulk = { confirming: "", running: false, report: null };
  const bulkActions = () => ACTIONS.filter(([name]) => name !== "seal"); // seal is a batch's own

  function setPicked(jid, on) {
    if (on) picked.add(jid);
    else picked.delete(jid);
    bulk.confirming = "";
    bulk.report = null;
    renderBulk();
  }

  /** Rows that left the table leave the selection (cheap when nothing is picked). */
  function prunePicked() {
    if (!picked.size) {
      const all = $("#pick-all");
      all.checked = all.indeterminate = false;
      return;
    }
    const before = picked.size;
    for (const jid of picked) if (!rows.has(jid)) picked.delete(jid);
    if (picked.size !== before) renderBulk();
  }

  /** Each row's box as the selection says: after a change of many at once. */
  function syncPicks() {
    for (const row of rows.values()) row.tr.querySelector(".pick").checked = picked.has(row.track.jid);
  }

  function renderBulk() {
    const box = $("#bulk");
    const all = $("#pick-all");
    all.checked = rows.size > 0 && picked.size === rows.size;
    all.indeterminate = picked.size > 0 && picked.size < rows.size;
    if (!picked.size && !bulk.report) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const n = picked.size;
    const jobs = (k) => `${k} job${k === 1 ? "" : "s"}`;
    const parts = [];
    if (bulk.report) {
      const { name, done, refused } = bulk.report;
      parts.push(h("span", { class: "bulk-report" }, `${name}: ${done} done, ${refused.length} refused`));
      if (refused.length) parts.push(h("span", { class: "refused", title: refused.join("\n") }, refused.slice(0, 3).join("; ")));
    }
    if (n && bulk.confirming) {
      const label = bulkActions().find(([name]) => name === bulk.confirming)[1];
      parts.push(
        h("span", {}, `${label} ${jobs(n)}?`),
        h("button", { type: "button", class: "action a-confirm", disabled: bulk.running, onclick: () => runBulk(bulk.confirming) }, `Yes, ${label.toLowerCase()} ${jobs(n)}`),
        h("button", { type: "button", class: "action", disabled: bulk.running, onclick: () => { bulk.confirming = ""; renderBulk(); } }, "No"),
      );
    } else if (n) {
      parts.push(h("span", {}, `${jobs(n)} selected`));
      for (const [name, label] of bulkActions()) {
        parts.push(h("button", { type: "button", class: `action a-${name}`, "data-bulk": name, onclick: () => { bulk.confirming = name; bulk.report = null; renderBulk(); } }, label));
      }
      parts.push(h("button", { type: "button", class: "link", onclick: () => { picked.clear(); syncPicks(); renderBulk(); } }, "clear selection"));
    }
    box.replaceChildren(...parts);
  }

  /** One request per picked job, a few at a time; what was refused is listed, not lost. */
  async function runBulk(name) {
    bulk.running = true;
    renderBulk();
    const queue = [...picked];
    const report = { name, done: 0, refused: [] };
    const worker = async () => {
      while (queue.length) {
        const jid = queue.shift();
        try {
          apply(await post(`${jobPath(jid)}/${name}`));
          report.done += 1;
          picked.delete(jid);
        } catch (error) {
          report.refused.push(`${jid}: ${error.message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: BULK_AT_ONCE }, worker));
    bulk.running = false;
    bulk.confirming = "";
    bulk.report = report;
    syncPicks(); // what was done is unpicked; what was refused stays picked
    renderBulk();
  }

  function addRows(tracks, { top = false } = {}) {
    const fresh = [];
    for (const track of tracks) {
      if (rows.has(track.jid)) continue;
      const row = makeRow(track);
      rows.set(track.jid, row);
      fresh.push(row.tr);
    }
    if (top) tbody.prepend(...fresh);
    else tbody.append(...fresh);
    while (rows.size > MAX_ROWS) {
      const last = tbody.querySelector("tr[data-jid]:last-of-type");
      rows.delete(last.dataset.jid);
      last.remove();
    }
    renderEmpty();
    return fresh;
  }

  async function loadList({ more = false } = {}) {
    if (more && held) return; // a fresh list is on its way, and its answer must not be dropped
    const request = ++listing;
    if (!more) held = held || [];
    const query = { ...view, limit: String(PAGE), cursor: more ? cursor : "" };
    document.body.classList.add("loading");
    let page;
    try {
      page = await api("jobs", query);
    } catch (error) {
      if (request === listing) {
        document.body.classList.remove("loading");
        if (error.status === 400 && !more) {
          // a refused filter matches nothing: do not leave the previous filter's rows up
          rows.clear();
          tbody.replaceChildren();
          cursor = null;
          renderEmpty();
        }
        replay();
        showBanner(error.status === 400 ? `Filter refused: ${error.message}` : `Jobs unavailable: ${error.message}`);
      }
      return;
    }
    if (request !== listing) return;
    document.body.classList.remove("loading");
    hideBanner();
    loaded = true;
    if (!more) {
      rows.clear();
      tbody.replaceChildren();
    }
    cursor = page.next;
    addRows(page.jobs);
    if (!more) replay();
  }

  function replay() {
    const events = held || [];
    held = null;
    for (const track of events) apply(track);
  }

  // --- live events -----------------------------------------------------------------------

  /** An event: the whole track (but its payload and tracebacks, see withHeavy). */
  function apply(track) {
    const row = rows.get(track.jid);
    const known = row ? row.track : detail.track && detail.track.jid === track.jid ? detail.track : null;
    if (known && Date.parse(track.updated_at) < Date.parse(known.updated_at)) return; // older than what we show
    const changedState = !known || known.state !== track.state;
    if (track.state === "unknown") {
      // deleted: it leaves the table; an open detail says it has no track
      if (row) {
        rows.delete(track.jid);
        row.tr.remove();
        renderEmpty();
      }
      if (detail.jid === track.jid) {
        detail.missing = true;
        renderDetail();
      }
      scheduleStats();
      return;
    }

    if (row) {
      if (matches(track)) {
        row.track = track;
        fillRow(row);
        flash(row.tr);
      } else {
        rows.delete(track.jid);
        row.tr.remove();
        renderEmpty();
      }
    } else if (matches(track)) {
      for (const tr of addRows([track], { top: true })) flash(tr);
    }
    if (detail.jid === track.jid) {
      if (changedState && known) detail.seen.push({ at: track.updated_at, state: track.state });
      detail.track = withHeavy(track, detail.track);
      if (changedState) loadRelated(track.jid);
      renderDetail();
    } else if (detail.related && changedState && relatedHas(track.jid)) {
      for (const group of Object.values(detail.related)) {
        for (const node of group) if (node.jid === track.jid) node.state = track.state;
      }
      renderDetail();
    }
    if (changedState) scheduleStats();
  }

  /** ``track`` with the payload and tracebacks of ``known``: events leave them out. */
  function withHeavy(track, known) {
    if (!known || known.jid !== track.jid || track === known) return track;
    const out = { ...track };
    if (!out.payload && known.payload) out.payload = known.payload;
    if (out.errors && known.errors) {
      out.errors = out.errors.map((e) => {
        if (e.traceback) return e;
        const same = known.errors.find((k) => k.at === e.at && k.message === e.message);
        return same && same.traceback ? { ...e, traceback: same.traceback } : e;
      });
    }
    return out;
  }

  function onTrack(event) {
    let track;
    try {
      track = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!track || typeof track.jid !== "string") return;
    if (held) held.push(track);
    else apply(track);
  }

  let source = null;
  let down = false; // the stream dropped since it was last open
  let retry = 1000;

  function connect() {
    const url = new URL("events", document.baseURI);
    if (token) url.searchParams.set("token", token);
    source = new EventSource(url);
    source.addEventListener("track", onTrack);
    source.addEventListener("open", () => {
      retry = 1000;
      setConnection("live");
      if (down) showBanner("Reconnected: the list was refreshed.", "ok", 4000);
      down = false;
      // Whatever happened while we were not listening is in a fresh list.
      loadList();
      loadStats();
      if (detail.jid) openDetail(detail.jid);
    });
    source.addEventListener("error", () => {
      if (!down) showBanner("Connection to the server lost: reconnecting… (what you see may be stale)", "warn");
      down = true;
      if (source.readyState === EventSource.CLOSED) {
        // the server refused the stream (or went away for good): try again ourselves
        source.close();
        setConnection("offline");
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      } else {
        setConnection("reconnecting");
      }
    });
  }

  function setConnection(status) {
    const el = $("#connection");
    el.dataset.status = status;
    el.querySelector(".label").textContent =
      { live: "live", reconnecting: "reconnecting…", offline: "offline", connecting: "connecting…" }[status];
    document.body.classList.toggle("stale", status === "reconnecting" || status === "offline");
  }

  let bannerTimer = null;

  function showBanner(text, kind = "error", hideAfter = 0) {
    const el = $("#banner");
    el.textContent = text;
    el.dataset.kind = kind;
    el.hidden = false;
    clearTimeout(bannerTimer);
    if (hideAfter) bannerTimer = setTimeout(() => (el.hidden = true), hideAfter);
  }

  function hideBanner() {
    const el = $("#banner");
    if (el.dataset.kind === "error") el.hidden = true;
  }

  // --- the detail view -------------------------------------------------------------------

  const detail = { jid: "", track: null, related: null, workflow: null, missing: false, acting: "", refused: "", seen: [] };
  const openTracebacks = new Set(); // errors (by time and message) whose traceback is open

  async function openDetail(jid) {
    const fresh = detail.jid !== jid;
    detail.jid = jid;
    if (fresh) {
      detail.track = rows.has(jid) ? rows.get(jid).track : null;
      detail.related = detail.workflow = null;
      detail.missing = false;
      detail.acting = detail.refused = "";
      detail.seen = [];
      $("#detail-body").scrollTop = 0;
    }
    for (const row of rows.values()) row.tr.classList.toggle("selected", row.track.jid === jid);
    $("#detail").hidden = false;
    document.body.classList.add("with-detail");
    writeHash();
    renderDetail();
    try {
      const fetched = await api(jobPath(jid));
      if (detail.jid !== jid) return;
      // an event may have brought a newer state while this was on its way
      const shown = detail.track;
      const newer = shown && shown.jid === jid && Date.parse(shown.updated_at) > Date.parse(fetched.updated_at);
      detail.track = newer ? withHeavy(shown, fetched) : fetched;
      detail.missing = false;
    } catch (error) {
      if (detail.jid !== jid) return;
      if (error.status === 404) detail.missing = true;
      else showBanner(`Job ${jid}: ${error.message}`);
    }
    renderDetail();
    loadRelated(jid);
  }

  async function loadRelated(jid) {
    try {
      const related = await api(`${jobPath(jid)}/related`);
      if (detail.jid !== jid) return;
      detail.related = related;
      // a job with neighbours may belong to a workflow wider than them
      const linked = related.prerequisites.length + related.dependents.length;
      detail.workflow = linked ? await api(`${jobPath(jid)}/workflow`) : null;
      if (detail.jid !== jid) return;
    } catch {
      if (detail.jid !== jid) return;
      detail.related = detail.workflow = null;
    }
    renderDetail();
  }

  function closeDetail() {
    detail.jid = "";
    detail.track = detail.related = null;
    $("#detail").hidden = true;
    document.body.classList.remove("with-detail");
    for (const row of rows.values()) row.tr.classList.remove("selected");
    writeHash();
  }

  function relatedHas(jid) {
    return Object.values(detail.related || {}).some((group) => group.some((node) => node.jid === jid));
  }

  /** What the track tells of the job's life (registered, each failed attempt, where it
   * is now), with the changes this page saw while it was open: oldest first. */
  function timeline(track) {
    const moments = [];
    if (track.created_at) moments.push({ at: track.created_at, what: "registered" });
    const errors = [...(track.errors || [])].reverse();
    errors.forEach((e, i) => {
      if (e.at) moments.push({ at: e.at, what: `attempt failed: ${e.type ? `${e.type}: ` : ""}${e.message}`, bad: true });
      else if (i === 0) moments.push({ at: track.updated_at, what: `failed: ${e.message}`, bad: true });
    });
    for (const { at, state } of detail.seen) moments.push({ at, what: TERMINAL.has(state) ? state : `became ${state}`, state });
    if (track.eligible_at && Date.parse(track.eligible_at) > Date.now() + clockSkew) {
      moments.push({ at: track.eligible_at, what: "goes back to its queue", later: true });
    }
    const last = detail.seen[detail.seen.length - 1];
    if (track.updated_at && !(last && last.state === track.state && last.at === track.updated_at)) {
      moments.push({ at: track.updated_at, what: TERMINAL.has(track.state) ? track.state : `${track.state} (last change)`, state: track.state });
    }
    moments.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    return h(
      "ol",
      { class: "timeline" },
      moments.map((m) =>
        h(
          "li",
          { class: m.bad ? "t-bad" : m.later ? "t-later" : m.state ? `t-state s-${m.state}` : "" },
          h("time", { datetime: m.at, title: m.at }, localTime(m.at)),
          h("span", {}, m.what),
        ),
      ),
    );
  }

  function section(title, ...content) {
    return h("section", { class: "section" }, h("h3", {}, title), ...content);
  }

  function fact(name, ...value) {
    return [h("dt", {}, name), h("dd", {}, ...value)];
  }

  function renderDetail() {
    const body = $("#detail-body");
    const { jid, track, related } = detail;
    $("#detail-title").textContent = jid;
    if (detail.missing) {
      body.replaceChildren(
        h("p", { class: "notice" }, badge("unknown"), " This job has no track: it was never registered, or its record expired."),
      );
      return;
    }
    if (!track) {
      body.replaceChildren(h("p", { class: "muted" }, "Loading…"));
      return;
    }
    const p = progress();
    setProgress(p, track);
    const facts = [
      ...fact("State", badge(track.state)),
      ...fact("Queue", h("span", { class: "mono" }, track.queue || "")),
      ...fact("Attempts", attempts(track)),
      ...(track.updated_at ? fact("Updated", timeAgo(track.updated_at), h("span", { class: "muted" }, ` · ${localTime(track.updated_at)}`)) : []),
      ...(track.created_at ? fact("Created", localTime(track.created_at)) : []),
      ...(track.reserve_until ? fact("Reserved until", localTime(track.reserve_until)) : []),
      ...(track.eligible_at ? fact("Eligible at", localTime(track.eligible_at)) : []),
      ...(track.prerequisites
        ? fact("Prerequisites", `${track.prerequisites.pending} pending of ${track.prerequisites.total}`)
        : []),
      ...(track.parent ? fact("Batch", jobLink(track.parent)) : []),
      ...(track.blocked_by ? fact("Blocked by", jobLink(track.blocked_by)) : []),
    ];
    const parts = [
      h("div", { class: "detail-progress" }, p.el, h("p", { class: "desc" }, track.desc || "")),
      actionBar(track),
      h("dl", { class: "facts" }, facts),
    ];

    if (track.payload) parts.push(section("Payload", payloadView(track.payload)));

    const labels = Object.entries(track.labels || {});
    if (labels.length) {
      parts.push(
        section(
          "Labels",
          h(
            "div",
            { class: "labels" },
            labels.map(([key, value]) =>
              h(
                "button",
                { type: "button", class: "tag label", title: "Show jobs with this label", onclick: () => setFilter({ label: `${key}=${value}` }) },
                h("span", { class: "key" }, key),
                "=",
                value,
              ),
            ),
          ),
        ),
      );
    }

    if (related && (related.prerequisites.length || related.dependents.length)) {
      parts.push(section("Graph", graph(track, related)));
    }
    const workflow = detail.workflow;
    if (related && workflow && workflow.jobs.length > 1 + related.prerequisites.length + related.dependents.length) {
      parts.push(
        section(
          `Workflow (${workflow.jobs.length}${workflow.more ? "+" : ""} jobs)`,
          workflowGraph(track, workflow),
          workflow.more ? h("p", { class: "muted" }, `It has more jobs than the ${workflow.jobs.length} read.`) : null,
        ),
      );
    }
    if (related && related.prerequisites.length) {
      parts.push(section(`Prerequisites (${related.prerequisites.length})`, nodeList(related.prerequisites)));
    }
    if (related && related.dependents.length) {
      parts.push(section(`Waiting for it (${related.dependents.length})`, nodeList(related.dependents)));
    }

    if (track.batch) {
      const b = track.batch;
      const counts = h(
        "p",
        { class: "batch-counts" },
        `${b.success} succeeded, ${b.pending} pending, ${b.dead} dead of ${b.total}`,
        b.sealed ? " · sealed" : " · open (more children may come)",
      );
      const children = related ? related.children : [];
      parts.push(
        section(
          `Batch children (${b.total})`,
          counts,
          children.length ? nodeList(children) : h("p", { class: "muted" }, related ? "No children yet." : "Loading…"),
          h("button", { type: "button", class: "link", onclick: () => setFilter({ parent: track.jid, state: "" }) }, "show the children in the table"),
        ),
      );
    }

    parts.push(section("Timeline", timeline(track)));

    const errors = track.errors || (track.error ? [track.error] : []);
    if (errors.length) {
      parts.push(
        section(
          `Errors (${errors.length}, newest first)`,
          h(
            "ol",
            { class: "errors" },
            errors.map((e) =>
              h(
                "li",
                {},
                h(
                  "div",
                  { class: "error-head" },
                  h("strong", {}, e.type || "error"),
                  e.at ? h("span", { class: "muted" }, localTime(e.at)) : null,
                ),
                h("pre", {}, e.message),
                e.source && e.source !== track.jid ? h("div", { class: "muted" }, "because of ", jobLink(e.source)) : null,
                e.traceback ? traceback(e) : null,
              ),
            ),
          ),
        ),
      );
    }
    body.replaceChildren(...parts);
  }

  // What a person may do to the job in its state; each is one POST of the API.
  const ACTIONS = [
    ["retry", "Retry", (t) => ["dead", "failed", "cancelled"].includes(t.state) && Boolean(t.payload) && !t.batch],
    ["resume", "Resume", (t) => t.state === "paused"],
    ["pause", "Pause", (t) => t.state === "waiting" || t.state === "enqueued"],
    ["seal", "Seal", (t) => Boolean(t.batch) && !t.batch.sealed && !TERMINAL.has(t.state)],
    ["cancel", "Cancel", (t) => !TERMINAL.has(t.state)],
  ];

  function actionBar(track) {
    const allowed = ACTIONS.filter(([, , when]) => when(track));
    if (!allowed.length && !detail.refused) return null;
    return h(
      "div",
      { class: "actions" },
      allowed.map(([name, label]) =>
        h(
          "button",
          {
            type: "button",
            class: `action a-${name}`,
            "data-action": name,
            disabled: Boolean(detail.acting),
            "aria-busy": detail.acting === name ? "true" : null,
            onclick: () => act(name, track.jid),
          },
          label,
        ),
      ),
      detail.refused ? h("p", { class: "refused", role: "alert" }, detail.refused) : null,
    );
  }

  async function act(name, jid) {
    detail.acting = name;
    detail.refused = "";
    renderDetail();
    try {
      const track = await post(`${jobPath(jid)}/${name}`);
      if (detail.jid === jid) detail.track = withHeavy(track, detail.track);
      apply(track);
    } catch (error) {
      if (detail.jid === jid) detail.refused = `${name} refused: ${error.message}`;
    } finally {
      if (detail.jid === jid) {
        detail.acting = "";
        renderDetail();
      }
    }
  }

  // Open stays open: the detail is drawn again at every event of the job.
  function traceback(e) {
    const key = `${detail.jid} ${e.at} ${e.message}`;
    const el = h("details", { class: "traceback", open: openTracebacks.has(key) }, h("summary", {}, "Traceback"), h("pre", {}, e.traceback));
    el.addEventListener("toggle", () => (el.open ? openTracebacks.add(key) : openTracebacks.delete(key)));
    return el;
  }

  function shortJson(value) {
    if (value === "hidden") return h("span", { class: "hidden-args" }, "hidden");
    const text = JSON.stringify(value);
    const shown = text.length > SHOWN_ARGS ? `${text.slice(0, SHOWN_ARGS - 1)}…` : text;
    return h("code", { class: "mono", title: text.length > SHOWN_ARGS ? text.slice(0, 4000) : null }, shown);
  }

  function payloadView(payload) {
    return h(
      "dl",
      { class: "facts payload" },
      fact("Function", h("code", { class: "mono" }, payload.func)),
      fact("Arguments", shortJson(payload.args)),
      fact("Keywords", shortJson(payload.kwargs)),
    );
  }

  function nodeList(nodes) {
    return h("ul", { class: "nodes" }, nodes.map((n) => h("li", {}, jobLink(n.jid, n.state), badge(n.state))));
  }

  // The job in the middle, what it waits for on the left, what waits for it on the right.
  const NODE_W = 132;
  const NODE_H = 34;

  /** One job of a graph (``n.more``: a box saying how many more are not drawn). */
  function graphNode(n, x, y, main) {
    if (n.more) {
      return svg(
        "g",
        { class: "node more" },
        svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 7 }),
        svg("text", { x: x + NODE_W / 2, y: y + NODE_H / 2 + 4, "text-anchor": "middle" }, `+${n.more} more`),
      );
    }
    const label = n.jid.length > 17 ? `${n.jid.slice(0, 16)}…` : n.jid;
    return svg(
      "g",
      {
        class: `node s-${n.state}${main ? " main" : ""}`,
        "data-jid": n.jid,
        tabindex: main ? null : 0,
        role: main ? null : "button",
        onclick: main ? null : () => openDetail(n.jid),
        onkeydown: main ? null : (e) => e.key === "Enter" && openDetail(n.jid),
      },
      svg("title", {}, `${n.jid} (${n.state})`),
      svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 7 }),
      svg("text", { x: x + 10, y: y + 15, class: "jid" }, label),
      svg("text", { x: x + 10, y: y + 28, class: "state" }, n.state),
    );
  }

  /** An arrow from (x1, y1) to (x2, y2), drawn as done once its prerequisite succeeded. */
  function graphEdge(x1, y1, x2, y2, done) {
    const dx = (x2 - x1) / 2;
    return svg("path", {
      d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2 - 8},${y2}`,
      class: done ? "done" : "pending",
      "marker-end": `url(#arrow-${done ? "done" : "pending"})`,
    });
  }

  function graphMarkers() {
    const marker = (name) =>
      svg(
        "marker",
        {
          id: `arrow-${name}`,
          viewBox: "0 0 10 10",
          refX: 0,
          refY: 5,
          markerUnits: "userSpaceOnUse",
          markerWidth: 8,
          markerHeight: 8,
          orient: "auto",
        },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: `arrow ${name}` }),
      );
    return svg("defs", {}, marker("done"), marker("pending"));
  }

  function graph(track, related) {
    const W = 480;
    const NW = NODE_W;
    const NH = NODE_H;
    const GAP = 10;
    const TOP = 24;
    const clip = (nodes) =>
      nodes.length > GRAPH_SIDE ? [...nodes.slice(0, GRAPH_SIDE - 1), { more: nodes.length - GRAPH_SIDE + 1 }] : nodes;
    const left = clip(related.prerequisites);
    const right = clip(related.dependents);
    const rowsShown = Math.max(left.length, right.length, 1);
    const H = TOP + rowsShown * (NH + GAP) + 4;
    const mid = TOP + (rowsShown * (NH + GAP) - GAP) / 2;
    const columnY = (count, i) => mid - (count * (NH + GAP) - GAP) / 2 + i * (NH + GAP);
    const xs = { left: 4, centre: (W - NW) / 2, right: W - NW - 4 };

    const edges = svg("g", { class: "edges" });
    const nodes = svg("g", { class: "nodes" });
    const centreY = mid - NH / 2;
    left.forEach((n, i) => {
      const y = columnY(left.length, i);
      nodes.append(graphNode(n, xs.left, y));
      edges.append(graphEdge(xs.left + NW, y + NH / 2, xs.centre, mid, n.state === "success"));
    });
    right.forEach((n, i) => {
      const y = columnY(right.length, i);
      nodes.append(graphNode(n, xs.right, y));
      edges.append(graphEdge(xs.centre + NW, mid, xs.right, y + NH / 2, track.state === "success"));
    });
    nodes.append(graphNode({ jid: track.jid, state: track.state }, xs.centre, centreY, true));
    return svg(
      "svg",
      { class: "graph", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Prerequisites and dependents of ${track.jid}` },
      graphMarkers(),
      left.length ? svg("text", { x: xs.left, y: 12, class: "column" }, "waits for") : null,
      right.length ? svg("text", { x: xs.right + NW, y: 12, class: "column", "text-anchor": "end" }, "waited on by") : null,
      edges,
      nodes,
    );
  }

  /** The whole workflow, in columns: each job one column right of its furthest
   * prerequisite. A column shows WORKFLOW_COLUMN jobs at most, then "+N more". */
  function workflowGraph(track, workflow) {
    const state = new Map(workflow.jobs.map((j) => [j.jid, j.state]));
    const prerequisites = new Map(workflow.jobs.map((j) => [j.jid, []]));
    for (const [from, to] of workflow.edges) prerequisites.get(to).push(from);
    const column = new Map();
    const place = (jid, path = new Set()) => {
      if (column.has(jid)) return column.get(jid);
      path.add(jid); // a cycle cannot be registered, but a drawing must never hang on one
      const before = prerequisites.get(jid).filter((p) => !path.has(p));
      const at = before.length ? 1 + Math.max(...before.map((p) => place(p, path))) : 0;
      path.delete(jid);
      column.set(jid, at);
      return at;
    };
    for (const jid of state.keys()) place(jid);
    const columns = [];
    for (const [jid, at] of column) (columns[at] ||= []).push(jid);
    const HGAP = 40;
    const VGAP = 8;
    const shown = new Map(); // jid -> [x, y]
    const nodes = svg("g", { class: "nodes" });
    let tallest = 1;
    columns.forEach((jids, i) => {
      jids.sort((a, b) => (a === track.jid ? -1 : b === track.jid ? 1 : a.localeCompare(b)));
      const drawn = jids.length > WORKFLOW_COLUMN ? jids.slice(0, WORKFLOW_COLUMN - 1) : jids;
      const x = 4 + i * (NODE_W + HGAP);
      drawn.forEach((jid, row) => {
        const y = 4 + row * (NODE_H + VGAP);
        shown.set(jid, [x, y]);
        nodes.append(graphNode({ jid, state: state.get(jid) }, x, y, jid === track.jid));
      });
      if (drawn.length < jids.length) {
        nodes.append(graphNode({ more: jids.length - drawn.length }, x, 4 + drawn.length * (NODE_H + VGAP)));
      }
      tallest = Math.max(tallest, Math.min(jids.length, WORKFLOW_COLUMN));
    });
    const edges = svg("g", { class: "edges" });
    for (const [from, to] of workflow.edges) {
      if (!shown.has(from) || !shown.has(to)) continue;
      const [x1, y1] = shown.get(from);
      const [x2, y2] = shown.get(to);
      edges.append(graphEdge(x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2, state.get(from) === "success"));
    }
    const W = 8 + columns.length * (NODE_W + HGAP) - HGAP;
    const H = 8 + tallest * (NODE_H + VGAP) - VGAP;
    return h(
      "div",
      { class: "workflow" },
      svg(
        "svg",
        { class: "graph", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `The workflow of ${track.jid}` },
        graphMarkers(),
        edges,
        nodes,
      ),
    );
  }

  // --- start -----------------------------------------------------------------------------

  function init() {
    makeChips();
    const job = readHash();
    syncForm();
    renderChips();
    renderEmpty();

    const fromForm = () =>
      setFilter({ queue: form.queue.value, label: form.label.value.trim(), parent: form.parent.value.trim() });
    form.queue.addEventListener("change", fromForm);
    for (const input of [form.label, form.parent]) input.addEventListener("change", fromForm);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      fromForm();
    });
    $("#clear").addEventListener("click", () => setFilter({ state: "", queue: "", label: "", parent: "" }));
    $("#more").addEventListener("click", () => loadList({ more: true }));
    $("#pick-all").addEventListener("click", (e) => {
      picked.clear();
      if (e.target.checked) for (const jid of rows.keys()) picked.add(jid);
      bulk.confirming = "";
      bulk.report = null;
      syncPicks();
      renderBulk();
    });
    $("#detail-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (e) => e.key === "Escape" && detail.jid && closeDetail());
    window.addEventListener("hashchange", () => {
      const again = readHash();
      syncForm();
      renderChips();
      loadList();
      if (again && again !== detail.jid) openDetail(again);
      else if (!again && detail.jid) closeDetail();
    });

    loadStats();
    loadList();
    loadWorkers();
    if (job) openDetail(job);
    connect();
    setInterval(tick, 1000);
    setInterval(loadWorkers, WORKERS_EVERY);
  }

  init();
})();
