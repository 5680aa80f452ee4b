/* Search suggestions while typing (the ragrec API's search/suggest/), as an ARIA combobox. No library, no CDN.
   Up/Down move through the list, Enter picks (a product opens its page, anything else is searched), Escape closes. */
(function () {
  "use strict";
  var input = document.getElementById("search-q");
  var list = document.getElementById("search-suggestions");
  if (!input || !list || !window.fetch) { return; }
  var url = input.getAttribute("data-suggest-url");
  var kinds = { query: "popular search", completion: "search", category: "category", product: "product" };
  var timer = null, active = -1, items = [], latest = 0;

  function close() {
    list.hidden = true;
    list.innerHTML = "";
    items = [];
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    active = index;
    items.forEach(function (item, i) {
      document.getElementById("suggestion-" + i).setAttribute("aria-selected", i === index ? "true" : "false");
    });
    if (index >= 0) { input.setAttribute("aria-activedescendant", "suggestion-" + index); }
    else { input.removeAttribute("aria-activedescendant"); }
  }

  function choose(index) {
    var item = items[index];
    if (!item) { return; }
    if (item.kind === "product" && item.url) { window.location.assign(item.url); return; }
    input.value = item.text;
    close();
    input.form.submit();
  }

  function show(suggestions) {
    close();
    items = suggestions;
    if (!items.length) { return; }
    items.forEach(function (item, i) {
      var option = document.createElement("li");
      option.id = "suggestion-" + i;
      option.className = "suggestion suggestion-" + item.kind;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      var text = document.createElement("span");
      text.textContent = item.text;
      var kind = document.createElement("span");
      kind.className = "suggestion-kind";
      kind.textContent = kinds[item.kind] || item.kind;
      option.appendChild(text);
      option.appendChild(kind);
      option.addEventListener("mousedown", function (event) { event.preventDefault(); choose(i); });
      list.appendChild(option);
    });
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  function load() {
    var text = input.value;
    if (!text.trim()) { close(); return; }
    var ticket = ++latest;
    fetch(url + "?k=8&q=" + encodeURIComponent(text), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : { suggestions: [] }; })
      .then(function (body) { if (ticket === latest && document.activeElement === input) { show(body.suggestions || []); } })
      .catch(function () { close(); });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(load, 120);
  });
  input.addEventListener("keydown", function (event) {
    if (list.hidden) { return; }
    if (event.key === "ArrowDown") { event.preventDefault(); highlight((active + 1) % items.length); }
    else if (event.key === "ArrowUp") { event.preventDefault(); highlight(active <= 0 ? items.length - 1 : active - 1); }
    else if (event.key === "Enter" && active >= 0) { event.preventDefault(); choose(active); }
    else if (event.key === "Escape") { close(); }
  });
  input.addEventListener("blur", function () { setTimeout(close, 150); });
})();
