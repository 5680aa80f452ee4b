/* The shopping assistant page, streamed: a message, a quick reply, a like or a dislike is posted to the API's turn
   endpoint as Server-Sent Events (fetch + ReadableStream: EventSource cannot POST), and what the assistant
   understood (state), found (products) and says (answer) appears as the events arrive; at "done" the page's
   content is fetched again, so the product cards and every control are the server's. Without fetch or streams,
   on a refusal the page cannot show, or if the stream breaks before it starts, the form is submitted as without
   script (the fallback). "Add to basket", removing a chip, "start over" and "clear" stay plain forms.
   No library, no CDN. */
(function () {
  "use strict";
  if (!window.fetch || !window.TextDecoder || !window.ReadableStream || !window.DOMParser) { return; }
  var STREAMED_FEEDBACK = { like: true, dislike: true };
  var busy = false;

  function byId(id) { return document.getElementById(id); }

  /* The page's own URL, from the message form (its "action" property is shadowed by the field named "action"). */
  function pageUrl() { return byId("assistant-form").getAttribute("action"); }

  function csrfToken() {
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  /* The turn a submitted form asks for ({message} or {feedback}), or null for a form left to the server. */
  function turnOf(form, submitter) {
    var action = form.querySelector("input[name=action]");
    action = action ? action.value : "";
    if (action === "message") {
      var box = form.querySelector("input[name=message]");
      var text = submitter && submitter.name === "message" ? submitter.value : box && box.value;
      text = (text || "").trim();
      return text ? { message: text } : null;
    }
    if (action === "feedback" && submitter && STREAMED_FEEDBACK[submitter.value]) {
      return { feedback: { item: form.querySelector("input[name=item]").value, action: submitter.value } };
    }
    return null;
  }

  /* The URL to post turns to: the page's conversation, or one started for this visitor (kept in the session). */
  function turnsUrl() {
    var form = byId("assistant-form");
    var known = form.getAttribute("data-turns-url");
    if (known) { return Promise.resolve(known); }
    var data = new FormData();
    data.append("action", "start");
    data.append("csrfmiddlewaretoken", csrfToken());
    return fetch(pageUrl(), { method: "POST", body: data, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("could not start a conversation (" + response.status + ")"); }
        return response.json();
      })
      .then(function (body) {
        form.setAttribute("data-turns-url", body.turns_url);
        return body.turns_url;
      });
  }

  /* Calls onEvent(name, data) for each event of a text/event-stream response, as its bytes arrive. */
  function readEvents(response, onEvent) {
    var reader = response.body.getReader(), decoder = new TextDecoder(), buffer = "";
    function dispatch() {
      var end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        var block = buffer.slice(0, end), name = "message", data = [];
        buffer = buffer.slice(end + 2);
        block.split("\n").forEach(function (line) {
          if (line.indexOf("event:") === 0) { name = line.slice(6).trim(); }
          else if (line.indexOf("data:") === 0) { data.push(line.slice(5).replace(/^ /, "")); }
        });
        if (data.length) { onEvent(name, JSON.parse(data.join("\n"))); }
      }
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) { buffer += decoder.decode(); dispatch(); return; }
        buffer += decoder.decode(chunk.value, { stream: true });
        dispatch();
        return pump();
      });
    }
    return pump();
  }

  function showError(message) {
    var error = byId("assistant-stream-error");
    error.textContent = message;
    error.hidden = !message;
  }

  function showChips(chips) {
    var list = byId("assistant-live-chips");
    list.textContent = "";
    chips.forEach(function (chip) {
      var item = document.createElement("li"), label = document.createElement("span");
      item.className = "assistant-chip";
      label.className = "assistant-live-chip";
      label.textContent = chip.label;
      item.appendChild(label);
      list.appendChild(item);
    });
  }

  /* The page's content as the server renders it now (cards, chips, quick replies), without a navigation. */
  function refresh() {
    return fetch(pageUrl(), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (fresh) { byId("main").innerHTML = fresh.innerHTML; }
      });
  }

  function stream(form, submitter, turn) {
    var live = byId("assistant-live"), text = byId("assistant-live-text"), status = byId("assistant-live-status");
    var started = false, ended = false;
    busy = true;
    showError("");
    live.hidden = false;
    text.textContent = "";
    status.textContent = "Thinking…";
    showChips([]);
    function onEvent(name, data) {
      started = true;
      if (name === "state") { showChips(data.chips); status.textContent = "Looking for products…"; }
      else if (name === "products") {
        status.textContent = data.products.length ? "Found " + data.products.length + " products." : "";
      }
      else if (name === "answer") { text.textContent += data.text; }
      else if (name === "done") { ended = true; }
      else if (name === "error") { ended = true; live.hidden = true; showError(data.detail); }
    }
    return turnsUrl()
      .then(function (url) {
        return fetch(url + "?stream=true", {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRFToken": csrfToken() },
          body: JSON.stringify(turn)
        });
      })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (response.ok && type.indexOf("text/event-stream") === 0) { return readEvents(response, onEvent); }
        if (response.status === 400 || response.status === 429) {  // the server's own words for the refusal
          return response.json().then(function (body) {
            started = ended = true;
            live.hidden = true;
            showError(body.detail || Object.keys(body).map(function (k) { return [].concat(body[k]).join(" "); }).join(" "));
          });
        }
        throw new Error("no stream (" + response.status + ")");
      })
      .then(function () {
        if (!ended) { throw new Error("the stream ended early"); }
        return byId("assistant-stream-error").hidden ? refresh() : null;
      })
      .catch(function (problem) {
        if (started) { live.hidden = true; showError("The answer was interrupted (" + problem.message + "); try again."); return; }
        form.setAttribute("data-plain", "1");  // the fallback: the same form, answered by the server
        if (form.requestSubmit) { form.requestSubmit(submitter || undefined); } else { form.submit(); }
      })
      .then(function () { busy = false; });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var method = (form.getAttribute("method") || "get").toLowerCase();
    if (!byId("assistant-form") || form.getAttribute("data-plain") || method !== "post") { return; }
    var turn = turnOf(form, event.submitter);
    if (!turn) { return; }
    event.preventDefault();
    if (!busy) { stream(form, event.submitter, turn); }
  });
}());
