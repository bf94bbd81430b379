// Copy buttons: the server renders them hidden (pages work without JavaScript); this shows them
// and copies the text of the element each one names (data-copy="#id") to the clipboard.
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const target = document.querySelector(button.dataset.copy);
    if (!target || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(target.textContent);
        button.textContent = "copied";
      } catch (error) {
        button.textContent = "copy failed";
      }
      setTimeout(() => { button.textContent = "copy"; }, 1500);
    });
  }
});
