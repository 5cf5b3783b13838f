/* relaykit console: the one script. Everything works without it; it only spares a reload
   while an integration is being verified. Served from this origin (the CSP allows no other,
   and no inline script). */
(function () {
  "use strict";
  var status = document.getElementById("status");
  if (!status || !status.dataset.poll || status.dataset.status !== "pending_verify") {
    return;
  }
  var delay = 1000;
  function poll() {
    fetch(status.dataset.poll, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store"
    })
      .then(function (response) {
        if (response.status === 401 || response.status === 404) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        if (body && body.status && body.status !== status.dataset.status) {
          /* the page for the new status (its buttons, its message), without the notice of
             the change that led here, which no longer describes the page */
          window.location.replace(window.location.pathname);
          return;
        }
        delay = body ? 1000 : Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }
  window.setTimeout(poll, delay);
})();
