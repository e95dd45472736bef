// The look-alike's stand-in for Plaid Link's script (cdn.plaid.com/link/v2/stable/
// link-initialize.js): the same contract, window.Plaid.create({token, onSuccess, onExit}) →
// {open, exit, destroy}; open() shows the stand-in bank's sign-in in the page, and a sign-in
// completes the Link at the look-alike (POST /sandbox/plaid/link/complete), whose public token
// and metadata go to onSuccess, as Plaid's do.
"use strict";
(function () {
  function create(config) {
    let dialog = null;
    function close() { if (dialog) { dialog.remove(); dialog = null; } }
    function open() {
      if (dialog) { return; }
      dialog = document.createElement("form");
      dialog.id = "plaid-link-stand-in";
      dialog.setAttribute("aria-label", "Sandbox Bank sign-in (Plaid Link stand-in)");
      const title = document.createElement("h2");
      title.textContent = "Sandbox Bank";
      const label = document.createElement("label");
      label.textContent = "Username ";
      const name = document.createElement("input");
      name.name = "username";
      name.value = "user_good";
      name.required = true;
      label.appendChild(name);
      const go = document.createElement("button");
      go.type = "submit";
      go.textContent = "Sign in";
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.textContent = "Cancel";
      cancel.addEventListener("click", () => { close(); if (config.onExit) { config.onExit(null, {}); } });
      dialog.append(title, label, " ", go, " ", cancel);
      dialog.addEventListener("submit", async (event) => {
        event.preventDefault();
        const answer = await fetch("/sandbox/plaid/link/complete", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ link_token: config.token, username: name.value }),
        });
        const body = await answer.json();
        close();
        if (answer.ok) { config.onSuccess(body.public_token, body.metadata); }
        else if (config.onExit) { config.onExit(body, {}); }
      });
      document.body.appendChild(dialog);
      name.focus();
    }
    return { open: open, exit: close, destroy: close };
  }
  window.Plaid = { create: create };
})();
