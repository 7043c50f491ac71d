// The expbot sandbox page: polls /sandbox/state, draws what the server rendered, sends actions to /sandbox/do.
"use strict";

const S = {
  user: localStorage.getItem("expbot-sandbox-user") || "U0OWNER",
  place: "C0LAUNCH",  // a channel id, a DM id, or "home"
  thread: null,       // [channel, ts] of the open thread
  seq: -1,
  data: null,
  modalKey: null,
};
const $ = (id) => document.getElementById(id);

async function poll() {
  try {
    const answer = await fetch(`/sandbox/state?user=${encodeURIComponent(S.user)}&seq=${S.seq}`);
    const data = await answer.json();
    if (data.messages) {
      S.data = data;
      S.seq = data.seq;
      draw();
    }
  } catch (e) { /* serve restarting: try again shortly */ }
  setTimeout(poll, 400);
}

function refresh() { S.seq = -1; }

async function act(body) {
  const answer = await fetch("/sandbox/do", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({user: S.user, ...body}),
  });
  const result = await answer.json();
  if (!result.ok) toast(result.error);
  refresh();
  return result;
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  setTimeout(() => { t.hidden = true; }, 5000);
}

function link(text, active, onclick) {
  const li = document.createElement("li");
  const a = document.createElement("a");
  a.href = "#";
  a.textContent = text;
  a.className = active ? "active" : "";
  a.onclick = (e) => { e.preventDefault(); onclick(); };
  li.appendChild(a);
  return li;
}

function go(place) {
  S.place = place;
  S.thread = null;
  if (place === "home") act({kind: "home"});
  draw();
}

function drawSidebar(d) {
  const users = $("user");
  if (!users.options.length) {
    for (const p of d.people) users.add(new Option(`${p.name} (${p.role})`, p.id));
    users.onchange = () => {
      S.user = users.value;
      localStorage.setItem("expbot-sandbox-user", S.user);
      if (S.place.startsWith("D")) S.place = "C0LAUNCH";
      S.modalKey = null;
      refresh();
      if (S.place === "home") act({kind: "home"});
    };
  }
  users.value = S.user;
  const channels = $("channels");
  channels.replaceChildren(...d.channels.map((c) => link(`# ${c.name}`, S.place === c.id, () => go(c.id))));
  const dms = $("dms");
  dms.replaceChildren(d.dm ? link("expbot", S.place === d.dm, () => go(d.dm)) : document.createTextNode(""));
  $("home-link").className = S.place === "home" ? "active" : "";
  $("home-link").onclick = (e) => { e.preventDefault(); go("home"); };
}

function messageNode(m, inThread) {
  const node = document.createElement("div");
  node.className = "msg" + (m.bot ? " bot" : "") + (m.ephemeral ? " ephemeral" : "");
  node.dataset.channel = m.channel;
  node.dataset.ts = m.ts;
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.textContent = m.user.slice(0, 1).toUpperCase();
  const content = document.createElement("div");
  content.className = "content";
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = m.user;
  if (m.bot) who.insertAdjacentHTML("beforeend", '<span class="app">APP</span>');
  if (m.ephemeral) who.insertAdjacentHTML("beforeend", '<span class="only-you">Only visible to you</span>');
  if (m.edited) who.insertAdjacentHTML("beforeend", '<span class="edited">(edited)</span>');
  const body = document.createElement("div");
  body.className = "body";
  body.innerHTML = m.html;
  content.append(who, body);
  for (const f of m.files) {
    const file = document.createElement("div");
    file.className = "file";
    file.innerHTML = f.image ? `<img alt="">` : `<a target="_blank">📄 </a>`;
    const el = file.firstElementChild;
    if (f.image) { el.src = f.url; el.alt = f.title; } else { el.href = f.url; el.append(f.title); }
    content.appendChild(file);
  }
  if (!inThread && m.replies) {
    const replies = document.createElement("span");
    replies.className = "replies";
    replies.textContent = `${m.replies} ${m.replies === 1 ? "reply" : "replies"}`;
    replies.onclick = () => { S.thread = [m.channel, m.ts]; draw(); };
    content.appendChild(replies);
  }
  node.append(avatar, content);
  return node;
}

function drawMessages(d) {
  const list = $("messages");
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
  if (S.place === "home") {
    $("title").textContent = "expbot · Home";
    list.innerHTML = d.home ? d.home.html : '<div class="empty">Opening the App Home…</div>';
    list.dataset.viewId = d.home ? d.home.id : "";
    $("composer").hidden = true;
    return;
  }
  $("composer").hidden = false;
  list.dataset.viewId = "";
  const channel = d.channels.find((c) => c.id === S.place);
  $("title").textContent = channel ? `# ${channel.name}` : "expbot (direct message)";
  $("input").placeholder = `Message ${channel ? "#" + channel.name : "expbot"} (try /experiment help)`;
  const shown = d.messages.filter((m) => m.channel === S.place && !m.thread_ts);
  list.replaceChildren(...shown.map((m) => messageNode(m, false)));
  if (!shown.length) list.innerHTML = '<div class="empty">Nothing here yet.</div>';
  if (stick) list.scrollTop = list.scrollHeight;
}

function drawThread(d) {
  const pane = $("thread");
  const parent = S.thread && d.messages.find((m) => m.channel === S.thread[0] && m.ts === S.thread[1]);
  pane.hidden = !parent;
  if (!parent) return;
  const replies = d.messages.filter((m) => m.channel === S.thread[0] && m.thread_ts === S.thread[1]);
  $("thread-messages").replaceChildren(messageNode(parent, true), ...replies.map((m) => messageNode(m, true)));
}

function drawModal(d) {
  const overlay = $("modal");
  const box = overlay.firstElementChild;
  if (!d.modal) { overlay.hidden = true; S.modalKey = null; return; }
  const key = `${d.modal.id}:${d.modal.hash}:${d.modal.html.length}`;
  if (key === S.modalKey) return;
  const typed = S.modalKey && S.modalKey.startsWith(d.modal.id + ":") ? modalValues(true) : null;
  box.innerHTML = d.modal.html;
  box.dataset.viewId = d.modal.id;
  if (typed) {  // Slack keeps what was typed when it shows field errors
    for (const [blockId, value] of Object.entries(typed)) {
      const field = box.querySelector(`.bk-input[data-block-id="${CSS.escape(blockId)}"] [data-action-id]`);
      if (field) field.value = value;
    }
  }
  S.modalKey = key;
  overlay.hidden = false;
}

function modalValues(raw) {
  const values = {};
  for (const input of $("modal").querySelectorAll(".bk-input")) {
    const field = input.querySelector("[data-action-id]");
    if (!field) continue;
    const blockId = input.dataset.blockId;
    if (raw) { values[blockId] = field.value; continue; }
    const type = field.dataset.type;
    let state = {type, value: field.value};
    if (type === "static_select") {
      const option = field.selectedOptions[0];
      state = {type, selected_option: field.value ? {text: {type: "plain_text", text: option.text}, value: field.value} : null};
    }
    values[blockId] = {[field.dataset.actionId]: state};
  }
  return values;
}

function draw() {
  const d = S.data;
  if (!d) return;
  drawSidebar(d);
  drawMessages(d);
  drawThread(d);
  drawModal(d);
}

function askFirst(confirm) {
  return new Promise((resolve) => {
    $("confirm-title").textContent = confirm.title;
    $("confirm-text").innerHTML = confirm.html;
    const ok = $("confirm-ok");
    ok.textContent = confirm.confirm;
    ok.className = `bk-button ${confirm.style || "primary"}`;
    $("confirm-deny").textContent = confirm.deny;
    $("confirm").hidden = false;
    const done = (answer) => { $("confirm").hidden = true; resolve(answer); };
    ok.onclick = () => done(true);
    $("confirm-deny").onclick = () => done(false);
  });
}

document.addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-action]");
  if (button) {
    if (button.dataset.confirm && !(await askFirst(JSON.parse(button.dataset.confirm)))) return;
    const msg = button.closest(".msg");
    const view = button.closest("[data-view-id]");
    const where = msg ? {channel: msg.dataset.channel, ts: msg.dataset.ts} : {view_id: view ? view.dataset.viewId : ""};
    await act({kind: "press", action: JSON.parse(button.dataset.action), where});
    return;
  }
  const modalButton = e.target.closest("button[data-modal]");
  if (modalButton) {
    const viewId = $("modal").firstElementChild.dataset.viewId;
    if (modalButton.dataset.modal === "submit") await act({kind: "submit", view_id: viewId, values: modalValues(false)});
    else await act({kind: "close", view_id: viewId});
  }
});

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text) return;
  $("input").value = "";
  await act({kind: "command", channel: S.place, text});
});
$("close-thread").onclick = () => { S.thread = null; draw(); };
poll();
