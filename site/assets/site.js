/* Small extras on top of pages that work without JavaScript:
   a print button, and a service worker so visited pages can be read offline. */
(function () {
  "use strict";
  var root = document.documentElement.getAttribute("data-root") || "";
  var button = document.querySelector(".print-button");
  if (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  }
  if ("serviceWorker" in navigator && window.location.protocol.indexOf("http") === 0) {
    window.addEventListener("load", function () {
      navigator.serviceWorker.register(root + "sw.js").catch(function () {
        /* Offline reading is a bonus: the site works the same without it. */
      });
    });
  }
})();
