// The token page: this tab's token, if it has one, is sent again at once; a token the
// server just refused is forgotten, so the form asks for another.
(() => {
  "use strict";
  const KEY = "tracker-token";
  if (new URLSearchParams(location.search).has("token")) {
    sessionStorage.removeItem(KEY);
    return;
  }
  const kept = sessionStorage.getItem(KEY);
  if (kept) location.replace(`./?token=${encodeURIComponent(kept)}${location.hash}`);
})();
