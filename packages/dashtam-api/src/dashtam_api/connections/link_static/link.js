// Opens Plaid Link with the page's link token and hands the public token it gives to
// Dashtam (POST <data-exchange>); the page's own address is the only credential it needs.
"use strict";
(function () {
  const box = document.getElementById("link");
  const said = document.getElementById("said");
  const button = document.getElementById("open");
  const say = (text) => { said.textContent = text; };
  const handler = window.Plaid.create({
    token: box.dataset.token,
    onSuccess: async (publicToken, metadata) => {
      say("Connecting " + ((metadata && metadata.institution && metadata.institution.name) || "your bank") + "…");
      const answer = await fetch(box.dataset.exchange, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ public_token: publicToken }),
      });
      const body = await answer.json().catch(() => ({}));
      if (answer.ok) {
        say("Connected. Dashtam reads your accounts at its next sync; you may close this page.");
        button.hidden = true;
      } else {
        say("Not connected: " + (body.detail || answer.status));
      }
    },
    onExit: (error) => { if (error) { say("Link ended: " + (error.display_message || error.error_message || error.error_code)); } },
  });
  button.addEventListener("click", () => handler.open());
  button.disabled = false;
})();
