// The troupe dashboard: polls /api/state every second and draws it.
'use strict';
(function () {
  const token = new URLSearchParams(location.search).get('token') || '';
  const eventColour = {
    fault: '#d62728', failed: '#d62728', node_lost: '#d62728',
    rollback: '#ff7f0e', resumed: '#ff7f0e', recovered: '#2ca02c',
  };
  let events = [];
  // Draws every event as a dashed vertical line at its step.
  const eventLines = {
    id: 'eventLines',
    afterDatasetsDraw(chart) {
      const x = chart.scales.x, area = chart.chartArea, ctx = chart.ctx;
      ctx.save();
      ctx.setLineDash([4, 3]);
      for (const e of events) {
        const px = x.getPixelForValue(e.step);
        if (px < area.left || px > area.right) continue;
        ctx.strokeStyle = eventColour[e.kind] || '#7f7f7f';
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
      }
      ctx.restore();
    },
  };
  function chart(id, datasets, y) {
    return new Chart(document.getElementById(id), {
      type: 'line',
      data: { datasets },
      options: {
        animation: false, maintainAspectRatio: false, parsing: false,
        normalized: true,
        scales: { x: { type: 'linear', title: { display: true, text: 'step' } },
                  y: y || { beginAtZero: true } },
        plugins: { legend: { display: datasets.length > 1 } },
        elements: { point: { radius: 0 } },
      },
      plugins: [eventLines],
    });
  }
  const line = (label, colour, extra) => Object.assign(
      { label, data: [], borderColor: colour, backgroundColor: colour,
        borderWidth: 1.5 }, extra || {});
  const charts = {
    loss: chart('loss', [line('train', '#1f77b4'),
                         line('test', '#d62728', { showLine: false, pointRadius: 4 })]),
    accuracy: chart('accuracy', [line('test accuracy', '#2ca02c', { pointRadius: 3 })],
                    { min: 0, max: 1 }),
    rate: chart('rate', [line('samples/s', '#9467bd')]),
    lr: chart('lr', [line('learning rate', '#ff7f0e')]),
  };
  const clock = s => {
    if (s === null || s === undefined) return '-';
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
    const two = v => String(v).padStart(2, '0');
    return h > 0 ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
  };
  const fixed = (v, d) => (v === null || v === undefined) ? '-' : v.toFixed(d);
  function text(el, s) { el.textContent = s; return el; }
  function make(tag, cls, s) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (s !== undefined) el.textContent = s;
    return el;
  }
  function show(st) {
    text(document.getElementById('job'), `${st.job} (${st.mode})`);
    const state = text(document.getElementById('state'), st.state);
    state.className = st.state;
    text(document.getElementById('summary'),
         `epoch ${st.epoch}/${st.epochs} · step ${st.step}/${st.steps} · ` +
         `loss ${fixed(st.loss, 4)} · ${st.samples_per_s ? Math.round(st.samples_per_s) : '-'} samples/s · ` +
         `lr ${st.lr === null ? '-' : st.lr.toPrecision(3)} · elapsed ${clock(st.elapsed_s)} · ETA ${clock(st.eta_s)}`);
    events = st.events;
    const p = st.progress;
    charts.loss.data.datasets[0].data = p.map(r => ({ x: r[0], y: r[2] }));
    charts.loss.data.datasets[1].data = st.epochs_done
        .filter(e => e.test_loss !== null).map(e => ({ x: e.step, y: e.test_loss }));
    charts.accuracy.data.datasets[0].data = st.epochs_done
        .filter(e => e.test_accuracy !== null).map(e => ({ x: e.step, y: e.test_accuracy }));
    charts.rate.data.datasets[0].data = p.filter(r => r[4] !== null).map(r => ({ x: r[0], y: r[4] }));
    charts.lr.data.datasets[0].data = p.map(r => ({ x: r[0], y: r[3] }));
    for (const c of Object.values(charts)) {
      c.options.scales.x.min = 0;
      c.options.scales.x.max = Math.max(st.steps, 1);
      c.update('none');
    }
    text(document.getElementById('restarts'), st.restarts);
    const nodes = document.getElementById('nodes');
    nodes.replaceChildren(...st.nodes.map(n => {
      const box = make('div', n.lost ? 'node lost' : 'node');
      box.dataset.node = n.name;
      const h = make('h3', '', n.name);
      if (n.lost) h.appendChild(make('span', 'badge', 'LOST'));
      box.appendChild(h);
      box.appendChild(make('div', 'devices', n.devices.join(', ')));
      for (const a of n.actors) {
        const chip = make('span', a.restarts > 0 ? 'actor restarted' : 'actor',
                          a.restarts > 0 ? `${a.name} ↻${a.restarts}` : a.name);
        chip.dataset.actor = a.name;
        box.appendChild(chip);
      }
      return box;
    }));
    const rows = document.getElementById('events');
    rows.replaceChildren(...st.events.map(e => {
      const tr = make('tr', e.kind);
      for (const v of [clock(e.t), e.step, e.kind, e.actor || '', e.node || '', e.message])
        tr.appendChild(make('td', '', String(v)));
      return tr;
    }));
    text(document.getElementById('footer'), `updated ${new Date().toLocaleTimeString()}`);
  }
  async function poll() {
    try {
      const r = await fetch(`api/state?token=${encodeURIComponent(token)}`,
                            { cache: 'no-store' });
      if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
      show(await r.json());
    } catch (err) {
      const state = text(document.getElementById('state'), 'unreachable');
      state.className = 'unreachable';
      text(document.getElementById('footer'),
           `cannot reach the job (${err.message}); the last figures stay`);
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
