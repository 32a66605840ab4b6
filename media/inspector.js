// The LoRA inspector's page script (loaded with the CSP nonce). Buttons post a message to the
// extension; the tensor table sorts and filters in place; filter, sort and scroll survive a
// re-render (the page is rebuilt whenever the file or its status changes).
(() => {
  const vscode = acquireVsCodeApi();
  const state = Object.assign(
    { filter: '', onlyDiff: false, sortKey: '', sortDir: 1, scrollY: 0 },
    vscode.getState() || {},
  );
  const save = () => vscode.setState(state);

  document.addEventListener('click', (e) => {
    const button = e.target instanceof Element ? e.target.closest('button[data-action]') : null;
    if (!button || button.disabled) return;
    vscode.postMessage({ type: button.getAttribute('data-action') });
  });

  window.addEventListener('message', (e) => {
    const msg = e.data;
    if (msg && msg.type === 'busy') document.body.classList.toggle('busy', !!msg.on);
  });

  const table = document.querySelector('table.tensors');
  const tbody = table ? table.querySelector('tbody') : null;
  const filter = document.getElementById('filter');
  const onlyDiff = document.getElementById('only-diff');
  const shown = document.getElementById('shown');

  function applyFilter() {
    if (!tbody) return;
    const words = state.filter.toLowerCase().split(/\s+/).filter(Boolean);
    let n = 0;
    const rows = tbody.rows;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      const name = r.getAttribute('data-name') || '';
      const ok = words.every((w) => name.includes(w)) && (!state.onlyDiff || r.getAttribute('data-differs') === '1');
      r.hidden = !ok;
      if (ok) n++;
    }
    if (shown) shown.textContent = n === rows.length ? '' : `${n} of ${rows.length} shown`;
  }

  const NUMERIC = { numel: true, bytes: true, diff: true, index: true };
  function applySort() {
    if (!tbody) return;
    const key = state.sortKey || 'index';
    const dir = state.sortKey ? state.sortDir : 1;
    const rows = Array.from(tbody.rows);
    const val = (r, k) => (NUMERIC[k] ? Number(r.getAttribute(`data-${k}`)) : r.getAttribute(`data-${k}`) || '');
    rows.sort((a, b) => {
      const x = val(a, key);
      const y = val(b, key);
      let c = x < y ? -1 : x > y ? 1 : 0;
      // Among equal difference kinds, the largest difference first.
      if (!c && key === 'diff') c = Number(b.getAttribute('data-delta')) - Number(a.getAttribute('data-delta'));
      if (!c) c = Number(a.getAttribute('data-index')) - Number(b.getAttribute('data-index'));
      return c * dir;
    });
    for (const r of rows) tbody.appendChild(r);
    // Two headers sort by element count (Shape, Elements): the one clicked shows the arrow.
    table.querySelectorAll('th[data-sort]').forEach((th, i) => {
      th.setAttribute(
        'aria-sort',
        state.sortKey && state.sortCol === i ? (dir > 0 ? 'ascending' : 'descending') : 'none',
      );
    });
  }

  if (table) {
    table.querySelectorAll('th[data-sort]').forEach((th, i) => {
      const sort = () => {
        const key = th.getAttribute('data-sort');
        if (state.sortKey === key && state.sortCol === i) state.sortDir = -state.sortDir;
        else {
          state.sortKey = key;
          state.sortCol = i;
          state.sortDir = 1;
        }
        save();
        applySort();
      };
      th.addEventListener('click', sort);
      th.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          sort();
        }
      });
    });
  }
  if (filter) {
    filter.value = state.filter;
    filter.addEventListener('input', () => {
      state.filter = filter.value;
      save();
      applyFilter();
    });
  }
  if (onlyDiff) {
    onlyDiff.checked = !!state.onlyDiff;
    onlyDiff.addEventListener('change', () => {
      state.onlyDiff = onlyDiff.checked;
      save();
      applyFilter();
    });
  }
  applySort();
  applyFilter();

  if (state.scrollY) window.scrollTo(0, state.scrollY);
  let pending = false;
  window.addEventListener('scroll', () => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      state.scrollY = window.scrollY;
      save();
    }, 200);
  });
})();
