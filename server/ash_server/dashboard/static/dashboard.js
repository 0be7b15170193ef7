// Ash dashboard: follows a session page live. The server renders (and escapes) every message; this script only
// asks for the new ones when the session's stream says something happened, and shows the text being written
// (as textContent, never markup). No inline code anywhere: the Content-Security-Policy allows this file only.
"use strict";

(function () {
  const root = document.getElementById("session");
  if (!root || root.dataset.live !== "on" || typeof EventSource === "undefined") {
    return;
  }
  const conversation = document.getElementById("conversation");
  const timeline = document.getElementById("timeline");
  const timelineScroll = document.getElementById("timeline-scroll");
  const usage = document.getElementById("usage");
  const typing = document.getElementById("typing");
  const typingText = typing.querySelector(".block");
  const liveState = document.getElementById("live-state");
  const status = document.getElementById("session-status");
  const turnState = document.getElementById("turn-state");
  let afterMessage = Number(root.dataset.afterMessage);
  let afterEvent = Number(root.dataset.afterEvent);
  let refreshing = false;
  let again = false;

  function setLive(state, label) {
    liveState.dataset.state = state;
    liveState.textContent = label;
  }

  function setTurn(running) {
    turnState.textContent = running ? "running" : "idle";
    turnState.classList.toggle("pool-running", running);
  }

  // Follow the end of a list while the reader is at its end; leave it alone once they scroll up to read.
  function atEnd(element) {
    return element.scrollHeight - element.scrollTop - element.clientHeight < 48;
  }

  function toEnd(element) {
    element.scrollTop = element.scrollHeight;
  }

  function clearTyping() {
    typingText.textContent = "";
    typing.hidden = true;
  }

  async function fetchUpdates() {
    const query = "?messages=" + afterMessage + "&events=" + afterEvent;
    const response = await fetch(root.dataset.updatesUrl + query, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      throw new Error("updates: HTTP " + response.status);
    }
    const update = await response.json();
    if (update.messages) {
      const empty = document.getElementById("no-messages");
      if (empty) {
        empty.remove();
      }
      const follow = atEnd(conversation);
      typing.insertAdjacentHTML("beforebegin", update.messages);
      if (follow) {
        toEnd(conversation);
      }
    }
    if (update.events) {
      const follow = atEnd(timelineScroll);
      timeline.insertAdjacentHTML("beforeend", update.events);
      if (follow) {
        toEnd(timelineScroll);
      }
    }
    if (update.usage) {
      usage.innerHTML = update.usage;
    }
    afterMessage = update.lastMessage;
    afterEvent = update.lastEvent;
    status.textContent = update.status;
    status.className = "badge status-" + update.status;
    return update.more;
  }

  // One request at a time; a change announced meanwhile asks again once the current one is done.
  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      do {
        again = (await fetchUpdates()) || false;
      } while (again);
    } catch (error) {
      setLive("lost", "update failed: reload the page");
    } finally {
      refreshing = false;
    }
  }

  toEnd(conversation);
  toEnd(timelineScroll);
  const source = new EventSource(root.dataset.streamUrl);
  source.addEventListener("open", function () {
    setLive("on", "live");
    refresh(); // whatever happened while (re)connecting
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      setLive("lost", "disconnected: reload the page");
    } else {
      setLive("connecting", "reconnecting…");
    }
  });
  source.addEventListener("session_start", function () {
    setTurn(true);
    refresh(); // the user's message is stored before the turn starts
  });
  source.addEventListener("text_delta", function (event) {
    const data = JSON.parse(event.data);
    const follow = atEnd(conversation);
    typingText.textContent += data.delta || "";
    typing.hidden = false;
    if (follow) {
      toEnd(conversation);
    }
  });
  // `message` carries each SDK message; the partial ones (stream_event) are already shown as text deltas.
  source.addEventListener("message", function (event) {
    const message = JSON.parse(event.data);
    if (message.type === "stream_event") {
      return;
    }
    clearTyping();
    refresh();
  });
  source.addEventListener("done", function () {
    setTurn(false);
    clearTyping();
    refresh();
  });
})();
