/* Search over all pages, in the browser: loads search-index.json once, no libraries. */
(function () {
  "use strict";
  var root = document.documentElement.getAttribute("data-root") || "";
  var form = document.querySelector(".search-page-form");
  var input = document.getElementById("search-query");
  var out = document.getElementById("search-results");
  var note = document.getElementById("search-no-js");
  if (!form || !input || !out) { return; }
  if (note) { note.hidden = true; }
  var pages = null;

  function fold(text) {
    /* Lower case without accents, so "fievre" finds "fièvre". */
    return text.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "");
  }
  function words(text) {
    return fold(text).split(/[^a-z0-9]+/).filter(function (w) { return w.length > 1; });
  }
  function load() {
    if (pages) { return Promise.resolve(pages); }
    return fetch(root + "search-index.json")
      .then(function (response) { return response.json(); })
      .then(function (data) {
        pages = data.map(function (p) {
          p.titleFolded = fold(p.title);
          p.bodyFolded = fold(p.summary + " " + p.text);
          return p;
        });
        return pages;
      });
  }
  function score(page, terms) {
    var total = 0;
    for (var i = 0; i < terms.length; i++) {
      var inTitle = page.titleFolded.indexOf(terms[i]) !== -1;
      var count = page.bodyFolded.split(terms[i]).length - 1;
      if (!inTitle && count === 0) { return 0; }
      total += (inTitle ? 10 : 0) + Math.min(count, 5);
    }
    return total;
  }
  function show(query) {
    var terms = words(query);
    out.textContent = "";
    if (terms.length === 0) { return; }
    load().then(function (all) {
      var hits = all
        .map(function (p) { return { page: p, score: score(p, terms) }; })
        .filter(function (h) { return h.score > 0; })
        .sort(function (a, b) { return b.score - a.score; });
      var heading = document.createElement("h2");
      heading.textContent = hits.length
        ? out.getAttribute("data-found").replace("{n}", String(hits.length))
        : out.getAttribute("data-none");
      out.appendChild(heading);
      if (!hits.length) { return; }
      var list = document.createElement("ol");
      list.className = "search-results";
      hits.forEach(function (hit) {
        var item = document.createElement("li");
        var link = document.createElement("a");
        link.href = root + hit.page.url;
        link.textContent = hit.page.title;
        if (hit.page.lang !== document.documentElement.lang) {
          link.lang = hit.page.lang;
          link.hreflang = hit.page.lang;
        }
        var summary = document.createElement("p");
        summary.textContent = hit.page.summary;
        summary.lang = hit.page.lang;
        item.appendChild(link);
        item.appendChild(summary);
        list.appendChild(item);
      });
      out.appendChild(list);
    }).catch(function () {
      out.textContent = out.getAttribute("data-none");
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var query = input.value;
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "?q=" + encodeURIComponent(query));
    }
    show(query);
  });
  var initial = new URLSearchParams(window.location.search).get("q") || "";
  input.value = initial;
  show(initial);
})();
