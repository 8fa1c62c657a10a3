// The playground page (docs/playground.md): plain JavaScript, no build step, no dependency.
// The API's paths are relative to the page's (`prompt-svc/models` from /playground is
// /prompt-svc/models), so the page also works behind a custom domain's base path.
//
// The API key lives in sessionStorage (this tab only) and is sent only to this API (the
// Authorization header of same-origin requests) and to its WebSocket API (the `token` query
// parameter of the connection, as docs/threads.md says). The page's Content-Security-Policy lets
// it connect nowhere else. Everything shown is set with textContent: no HTML from the API.
"use strict";

(() => {
  const STORE = { key: "promptsvc.playground.key", wsUrl: "promptsvc.playground.wsUrl" };
  const TERMINAL = new Set(["completed", "abandoned", "canceled", "removed"]);
  const ID_SYNTAX = /^[A-Za-z0-9._:@-]{1,128}$/;
  const ACK_SECONDS = 15; // for a subscribe's answer
  const PING_SECONDS = 240; // API Gateway closes a WebSocket idle for 10 minutes
  const POLL_SECONDS = 1; // without a WebSocket: how often a prompt is read until it ends
  const MAX_RECONNECTS = 5;

  const $ = (id) => document.getElementById(id);
  const ui = {
    keyForm: $("key-form"),
    key: $("key"),
    wsUrl: $("ws-url"),
    forget: $("forget-key"),
    connection: $("connection"),
    promptForm: $("prompt-form"),
    model: $("model"),
    thread: $("thread"),
    newThread: $("new-thread"),
    prompt: $("prompt"),
    send: $("send"),
    cancel: $("cancel"),
    promptId: $("prompt-id"),
    status: $("status"),
    stream: $("stream"),
    answer: $("answer"),
    promptError: $("prompt-error"),
    turns: $("turns"),
    turnsEmpty: $("turns-empty"),
    refresh: $("refresh"),
    recent: document.querySelector("#recent tbody"),
    errors: $("errors"),
  };

  const state = {
    key: "",
    socket: null, // the open (or opening) WebSocket
    opened: null, // a promise of it, open
    subscribed: new Set(), // thread ids subscribed on this socket
    waiters: [], // [{test, resolve}] for frames answering an action
    threads: new Map(), // threadId -> {next, lastSeq, pending: Map(seq -> Map(part -> frame))}
    prompts: new Map(), // promptId -> {text, status, error, deltas}
    answers: new Map(), // promptId -> the stored answer of a completed prompt (thread turns)
    current: null, // {id, threadId}
    reconnects: 0,
    pinger: 0,
    poller: 0,
  };

  // ------------------------------------------------------------------ small helpers

  function configuredWsUrl() {
    const meta = document.querySelector('meta[name="promptsvc-websocket-url"]');
    const value = meta ? meta.content.trim() : "";
    return value.includes("{{") ? "" : value;
  }

  function newId(prefix) {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes); // unlike randomUUID, also on plain http:// pages
    return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function showError(message) {
    ui.errors.textContent = message;
  }

  function clearError() {
    ui.errors.textContent = "";
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function when(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString();
  }

  async function api(method, path, body) {
    if (!state.key) throw new Error("paste an API key first");
    const headers = { Authorization: "Bearer " + state.key };
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const reason = (data && (data.error || data.message)) || response.statusText;
      const error = new Error(method + " " + path + ": " + response.status + " " + reason);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  // ------------------------------------------------------------------ the WebSocket

  function setStream(text) {
    ui.stream.textContent = text;
  }

  function closeSocket() {
    const socket = state.socket;
    state.socket = null;
    state.opened = null;
    state.subscribed.clear();
    clearInterval(state.pinger);
    if (socket) socket.close(1000);
    setStream("not connected");
  }

  function connect() {
    if (state.opened) return state.opened;
    const base = ui.wsUrl.value.trim();
    if (!base) return Promise.reject(new Error("no WebSocket URL (the API sets none: WEBSOCKET_URL)"));
    let url;
    try {
      url = new URL(base);
    } catch (_) {
      return Promise.reject(new Error("the WebSocket URL is not a URL: " + base));
    }
    url.searchParams.set("token", state.key);
    const socket = new WebSocket(url.toString());
    state.socket = socket;
    state.subscribed.clear();
    setStream("connecting");
    state.opened = new Promise((resolve, reject) => {
      socket.addEventListener("open", () => resolve(socket), { once: true });
      socket.addEventListener(
        "close",
        (event) => reject(new Error("the WebSocket API refused or closed the connection (" + event.code + ")")),
        { once: true },
      );
    });
    socket.addEventListener("open", () => {
      setStream("connected");
      state.pinger = setInterval(() => send({ action: "ping" }), PING_SECONDS * 1000);
    });
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      onFrame(frame);
    });
    socket.addEventListener("close", () => {
      if (state.socket !== socket) return; // replaced or closed on purpose
      state.socket = null;
      state.opened = null;
      state.subscribed.clear();
      clearInterval(state.pinger);
      setStream("disconnected");
      resumeAfterDrop();
    });
    return state.opened;
  }

  function send(message) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message));
  }

  function waitFor(test, seconds) {
    return new Promise((resolve, reject) => {
      const waiter = { test, resolve };
      state.waiters.push(waiter);
      setTimeout(() => {
        const index = state.waiters.indexOf(waiter);
        if (index >= 0) {
          state.waiters.splice(index, 1);
          reject(new Error("no answer from the WebSocket API in " + seconds + " s"));
        }
      }, seconds * 1000);
    });
  }

  function threadOf(threadId) {
    let thread = state.threads.get(threadId);
    if (!thread) {
      // fromStart: this page made the thread, so a subscription may replay it from seq 0.
      thread = { next: null, lastSeq: null, fromStart: false, pending: new Map() };
      state.threads.set(threadId, thread);
    }
    return thread;
  }

  // Subscribe (once per connection) to a thread. `after`: replay the events after that seq, then
  // live ones; null: live events only.
  async function subscribe(threadId, after) {
    const socket = await connect();
    if (state.subscribed.has(threadId)) return;
    const message = { action: "subscribe", threadId };
    if (after !== null && after !== undefined) {
      message.after = after;
      threadOf(threadId).next = after + 1;
    }
    const answer = waitFor(
      (frame) =>
        (frame.type === "subscribed" && frame.threadId === threadId) ||
        (frame.type === "error" && frame.action === "subscribe"),
      ACK_SECONDS,
    );
    socket.send(JSON.stringify(message));
    const frame = await answer;
    if (frame.type === "error") throw new Error("subscribe: " + frame.error);
    state.subscribed.add(threadId);
  }

  // After a dropped connection, while a prompt is still running: reconnect and go on after the
  // last seq applied, so no event is lost or applied twice.
  function resumeAfterDrop() {
    const current = state.current;
    if (!current || isFinished(current.id)) return;
    if (state.reconnects >= MAX_RECONNECTS) {
      pollUntilFinished(current.id);
      return;
    }
    state.reconnects += 1;
    setTimeout(() => {
      const thread = threadOf(current.threadId);
      const after = thread.lastSeq !== null ? thread.lastSeq : thread.fromStart ? 0 : null;
      subscribe(current.threadId, after).catch(() => pollUntilFinished(current.id));
    }, 1000 * state.reconnects);
  }

  function onFrame(frame) {
    for (const waiter of state.waiters) {
      if (waiter.test(frame)) {
        state.waiters.splice(state.waiters.indexOf(waiter), 1);
        waiter.resolve(frame);
        return;
      }
    }
    if (typeof frame.seq === "number" && frame.threadId) {
      onEvent(frame);
    } else if (frame.type === "error") {
      showError("WebSocket API: " + frame.error);
    }
  }

  // Events are applied in seq order, each once: early ones wait for the seqs before them, a
  // message split into parts (same seq, `part` of `parts`) waits for all of them.
  function onEvent(event) {
    const thread = threadOf(event.threadId);
    if (thread.next === null) thread.next = event.seq; // a live-only subscription starts here
    if (event.seq < thread.next) return; // already applied
    const parts = thread.pending.get(event.seq) || new Map();
    parts.set(event.part || 1, event);
    thread.pending.set(event.seq, parts);
    while (thread.pending.has(thread.next)) {
      const group = thread.pending.get(thread.next);
      const first = group.values().next().value;
      if (group.size < (first.parts || 1)) break;
      thread.pending.delete(thread.next);
      const ordered = Array.from(group.entries()).sort((a, b) => a[0] - b[0]).map((entry) => entry[1]);
      apply({ ...first, text: ordered.map((piece) => piece.text || "").join("") });
      thread.lastSeq = thread.next;
      thread.next += 1;
    }
  }

  function promptOf(promptId) {
    let prompt = state.prompts.get(promptId);
    if (!prompt) {
      // whole: this page saw the prompt's events from its first (`scheduled`, or its only one, a
      // cancel before it ran), so `text` is all of its answer.
      // closed: its closing status event came (no more text after it).
      prompt = { text: "", status: "", error: "", deltas: 0, seen: false, whole: false, closed: false };
      state.prompts.set(promptId, prompt);
    }
    return prompt;
  }

  function isFinished(promptId) {
    return TERMINAL.has(promptOf(promptId).status);
  }

  function apply(event) {
    if (event.type === "gap" || !event.promptId) return;
    const prompt = promptOf(event.promptId);
    if (!prompt.seen) {
      prompt.seen = true;
      prompt.whole = event.type === "status" && (event.status === "scheduled" || TERMINAL.has(event.status));
    }
    if (event.type === "delta") {
      prompt.text += event.text;
      prompt.deltas += 1;
    } else if (event.type === "reset") {
      prompt.text = "";
    } else if (event.type === "status") {
      prompt.status = event.status;
      prompt.error = event.error || "";
      prompt.closed = TERMINAL.has(event.status);
    }
    if (state.current && state.current.id === event.promptId) render();
    if (event.type === "status" && TERMINAL.has(event.status)) finished(event.promptId);
  }

  // ------------------------------------------------------------------ the prompt on screen

  function render() {
    const current = state.current;
    if (!current) return;
    const prompt = promptOf(current.id);
    ui.promptId.textContent = current.id;
    ui.status.textContent = prompt.status || "sending";
    if (ui.answer.textContent !== prompt.text) ui.answer.textContent = prompt.text;
    ui.answer.dataset.deltas = String(prompt.deltas);
    ui.answer.dataset.closed = String(prompt.closed);
    ui.promptError.hidden = !prompt.error;
    ui.promptError.textContent = prompt.error;
    ui.cancel.disabled = TERMINAL.has(prompt.status);
  }

  function finished(promptId) {
    if (state.current && state.current.id === promptId) {
      clearInterval(state.poller);
      ui.cancel.disabled = true;
    }
    refreshTurns();
    refreshRecent();
  }

  // Without a WebSocket (none configured, or it keeps dropping): read the prompt until it ends.
  function pollUntilFinished(promptId) {
    clearInterval(state.poller);
    setStream("polling (no WebSocket)");
    state.poller = setInterval(async () => {
      if (!state.current || state.current.id !== promptId) {
        clearInterval(state.poller);
        return;
      }
      try {
        const data = await api("GET", "prompt-svc/prompt/" + encodeURIComponent(promptId));
        const prompt = promptOf(promptId);
        if (prompt.status !== data.prompt.status || (data.answer && data.answer !== prompt.text)) {
          prompt.status = data.prompt.status;
          prompt.error = data.prompt.error || "";
          if (data.answer) prompt.text = data.answer;
          prompt.closed = TERMINAL.has(prompt.status);
          render();
          if (TERMINAL.has(prompt.status)) finished(promptId);
        }
      } catch (error) {
        showError(error.message);
      }
    }, POLL_SECONDS * 1000);
  }

  async function sendPrompt(event) {
    event.preventDefault();
    clearError();
    const text = ui.prompt.value;
    if (!text.trim()) {
      showError("write a prompt first");
      ui.prompt.focus();
      return;
    }
    let threadId = ui.thread.value.trim();
    let fresh = false;
    if (!threadId) {
      threadId = newId("thread");
      ui.thread.value = threadId;
      fresh = true;
    } else if (!ID_SYNTAX.test(threadId)) {
      showError("a thread id is 1 to 128 letters, digits and ._:@-");
      ui.thread.focus();
      return;
    }
    const id = newId("prompt"); // chosen here, so its events are known before the add answers
    state.current = { id, threadId };
    state.reconnects = 0;
    clearInterval(state.poller);
    promptOf(id);
    render();
    ui.send.disabled = true;
    let live = true;
    try {
      // Subscribed before the add: every event of the new prompt comes after. A thread this page
      // made replays from its start; one it has followed, from its last seq; else live only.
      const thread = threadOf(threadId);
      if (fresh) thread.fromStart = true;
      await subscribe(threadId, thread.lastSeq !== null ? thread.lastSeq : thread.fromStart ? 0 : null);
    } catch (error) {
      live = false;
      setStream("unavailable");
      showError("The answer will not stream: " + error.message);
    }
    try {
      const body = { id, prompt: text, threadId, sync: false };
      if (ui.model.value) body.modelId = ui.model.value;
      const added = await api("POST", "prompt-svc/prompt", body);
      const prompt = promptOf(id);
      if (!prompt.status) prompt.status = added.prompt.status;
      render();
      if (!live) pollUntilFinished(id);
      refreshTurns();
      refreshRecent();
    } catch (error) {
      showError(error.message);
      promptOf(id).status = "not sent";
      render();
      ui.cancel.disabled = true;
    } finally {
      ui.send.disabled = !state.key;
    }
  }

  async function cancelPrompt() {
    const current = state.current;
    if (!current) return;
    clearError();
    ui.cancel.disabled = true;
    try {
      const data = await api("POST", "prompt-svc/prompt/" + encodeURIComponent(current.id) + "/cancel");
      const prompt = promptOf(current.id);
      if (!TERMINAL.has(prompt.status)) prompt.status = data.prompt.status;
      render();
      if (TERMINAL.has(prompt.status)) finished(current.id);
    } catch (error) {
      showError(error.message);
      render();
    }
  }

  // ------------------------------------------------------------------ thread turns, recent prompts

  // A turn's answer: what streamed here, when this page saw all of it (a prompt canceled while it
  // ran keeps what its deltas showed), else the stored answer (kept once the prompt completed).
  async function answerOf(prompt) {
    const streamed = state.prompts.get(prompt.id);
    if (streamed && (streamed.whole || !TERMINAL.has(prompt.status))) return streamed.text;
    if (state.answers.has(prompt.id)) return state.answers.get(prompt.id);
    if (!TERMINAL.has(prompt.status)) return "";
    const data = await api("GET", "prompt-svc/prompt/" + encodeURIComponent(prompt.id));
    const answer = data.answer || "";
    if (data.prompt.status === "completed") state.answers.set(prompt.id, answer);
    return answer;
  }

  let turnsRequest = 0;
  async function refreshTurns() {
    const threadId = ui.thread.value.trim();
    const request = ++turnsRequest;
    if (!state.key || !threadId || !ID_SYNTAX.test(threadId)) {
      ui.turns.replaceChildren();
      ui.turnsEmpty.hidden = false;
      return;
    }
    try {
      const page = await api("POST", "prompt-svc/prompts", {
        query: {
          filters: [{ fields: ["threadId"], op: "equals", jsonValues: JSON.stringify([threadId]) }],
          orderBys: [{ field: "createdAt", desc: true }],
          limit: 20,
        },
      });
      const prompts = page.prompts.slice().reverse(); // the last 20 turns, oldest first
      const answers = await Promise.all(prompts.map((prompt) => answerOf(prompt).catch(() => "")));
      if (request !== turnsRequest) return; // a newer refresh is on its way
      ui.turns.replaceChildren(
        ...prompts.map((prompt, index) => {
          const item = element("li");
          item.dataset.promptId = prompt.id;
          item.dataset.status = prompt.status;
          item.append(
            element("p", prompt.prompt, "turn-prompt"),
            element("p", [prompt.status, prompt.modelId, when(prompt.createdAt)].filter(Boolean).join(" · "), "turn-meta"),
            element("div", answers[index], "turn-answer"),
          );
          return item;
        }),
      );
      ui.turnsEmpty.hidden = prompts.length > 0;
      ui.turnsEmpty.textContent = "No prompt on this thread yet.";
    } catch (error) {
      showError(error.message);
    }
  }

  async function refreshRecent() {
    if (!state.key) return;
    try {
      const page = await api("POST", "prompt-svc/prompts", { query: { limit: 10 } });
      ui.recent.replaceChildren(
        ...page.prompts.map((prompt) => {
          const row = element("tr");
          row.dataset.promptId = prompt.id;
          const open = element("button", prompt.threadId, "link");
          open.type = "button";
          open.title = "Show this thread";
          open.addEventListener("click", () => openThread(prompt.threadId));
          const thread = element("td");
          thread.append(open);
          const text = prompt.prompt.length > 60 ? prompt.prompt.slice(0, 60) + "…" : prompt.prompt;
          row.append(
            element("td", text),
            element("td", prompt.status, "recent-status"),
            thread,
            element("td", prompt.modelId),
            element("td", when(prompt.createdAt)),
          );
          return row;
        }),
      );
    } catch (error) {
      showError(error.message);
    }
  }

  function openThread(threadId) {
    ui.thread.value = threadId;
    refreshTurns();
    ui.prompt.focus();
  }

  // ------------------------------------------------------------------ key and models

  async function loadModels() {
    const data = await api("GET", "prompt-svc/models");
    ui.model.replaceChildren(
      ...data.models.map((model) => {
        const label = (model.name || model.id) + (model.id === data.defaultModelId ? " (default)" : "");
        const option = element("option", label);
        option.value = model.id;
        option.selected = model.id === data.defaultModelId;
        return option;
      }),
    );
    ui.model.disabled = false;
  }

  async function useKey(event) {
    if (event) event.preventDefault();
    clearError();
    const key = ui.key.value.trim();
    if (!key) {
      showError("paste an API key first");
      ui.key.focus();
      return;
    }
    closeSocket();
    state.key = key;
    sessionStorage.setItem(STORE.key, key);
    const wsUrl = ui.wsUrl.value.trim();
    if (wsUrl && wsUrl !== configuredWsUrl()) sessionStorage.setItem(STORE.wsUrl, wsUrl);
    else sessionStorage.removeItem(STORE.wsUrl);
    ui.connection.textContent = "Checking the key...";
    try {
      await loadModels();
      ui.connection.textContent = "Key accepted.";
      ui.send.disabled = false;
      refreshRecent();
      refreshTurns();
    } catch (error) {
      ui.connection.textContent = error.status === 401 ? "The API does not know this key." : "Could not reach the API.";
      showError(error.message);
      ui.send.disabled = true;
    }
  }

  function forgetKey() {
    closeSocket();
    state.key = "";
    sessionStorage.removeItem(STORE.key);
    ui.key.value = "";
    ui.send.disabled = true;
    ui.model.disabled = true;
    ui.model.replaceChildren();
    ui.recent.replaceChildren();
    ui.turns.replaceChildren();
    ui.connection.textContent = "Key forgotten.";
    ui.key.focus();
  }

  // ------------------------------------------------------------------ wiring

  ui.keyForm.addEventListener("submit", useKey);
  ui.forget.addEventListener("click", forgetKey);
  ui.wsUrl.addEventListener("change", () => {
    closeSocket();
    const wsUrl = ui.wsUrl.value.trim();
    if (wsUrl && wsUrl !== configuredWsUrl()) sessionStorage.setItem(STORE.wsUrl, wsUrl);
    else sessionStorage.removeItem(STORE.wsUrl);
  });
  ui.promptForm.addEventListener("submit", sendPrompt);
  ui.cancel.addEventListener("click", cancelPrompt);
  ui.refresh.addEventListener("click", () => {
    refreshRecent();
    refreshTurns();
  });
  ui.newThread.addEventListener("click", () => {
    ui.thread.value = "";
    refreshTurns();
    ui.prompt.focus();
  });
  ui.thread.addEventListener("change", refreshTurns);
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      if (!ui.send.disabled) ui.promptForm.requestSubmit();
    }
  });

  ui.wsUrl.value = sessionStorage.getItem(STORE.wsUrl) || configuredWsUrl();
  setStream(ui.wsUrl.value ? "not connected" : "no WebSocket URL: answers are polled");
  const saved = sessionStorage.getItem(STORE.key);
  if (saved) {
    ui.key.value = saved;
    useKey();
  }
})();
