// Keeps the payment page current without the payer touching it: polls the public status,
// reloads when something changed, counts down the link's lifetime and, once the payment is
// settled, returns the payer to the merchant.
(function () {
  "use strict";
  var root = document.getElementById("payment");
  if (!root) return;
  var id = root.dataset.id;
  var status = root.dataset.status;
  var paid = root.dataset.paid;
  var returnUrl = root.dataset.returnUrl;

  function reload() {
    // Drop one-shot notices from the URL so a reload shows the fresh state only.
    var url = new URL(window.location.href);
    url.searchParams.delete("notice");
    url.searchParams.delete("error");
    window.location.replace(url.toString());
  }

  // Kaspi biller: copy the account's digits (shown in groups) for pasting into the Kaspi app.
  var copy = document.querySelector("[data-copy]");
  if (copy) {
    copy.addEventListener("click", function () {
      var done = function () { copy.textContent = copy.dataset.copied; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(copy.dataset.copy).then(done, function () {});
        return;
      }
      var field = document.createElement("textarea");  // plain http: the old way
      field.value = copy.dataset.copy;
      field.setAttribute("readonly", "");
      field.style.position = "fixed";
      field.style.opacity = "0";
      document.body.appendChild(field);
      field.select();
      try { if (document.execCommand("copy")) done(); } catch (e) { /* nothing to copy with */ }
      document.body.removeChild(field);
    });
  }

  // The QR's own lifetime: when it ends, the page reloads and offers a new one.
  var attemptCountdown = document.getElementById("attempt-countdown");
  if (attemptCountdown) startCountdown(attemptCountdown);

  var countdown = document.getElementById("countdown");
  if (countdown) startCountdown(countdown);

  function startCountdown(countdown) {
    var left = parseInt(countdown.dataset.seconds, 10);
    var deadline = Date.now() + left * 1000;
    var tick = function () {
      var s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
      countdown.textContent = (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(sec).padStart(2, "0");
      if (s === 0) { reload(); return; }
      setTimeout(tick, 1000);
    };
    tick();
  }

  if (root.dataset.final === "true") {
    if (returnUrl) {
      var note = document.getElementById("redirect-note");
      var s = 5;
      var step = function () {
        if (note) note.textContent = note.dataset.template.replace("{s}", s);
        if (s === 0) { window.location.assign(returnUrl); return; }
        s -= 1;
        setTimeout(step, 1000);
      };
      step();
    }
    return;
  }

  var delay = 2000;
  function poll() {
    fetch("/api/payment/" + encodeURIComponent(id) + "/status", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (body && body.data) {
          var minor = body.data.paid_amount.replace(".", "");
          if (body.data.status !== status || String(parseInt(minor, 10)) !== String(parseInt(paid, 10))) {
            reload();
            return;
          }
          delay = 2000;
        } else {
          delay = Math.min(delay * 2, 30000);
        }
        setTimeout(poll, delay);
      })
      .catch(function () { delay = Math.min(delay * 2, 30000); setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();
