/**
 * The page of `icetray ui`: plain HTML, CSS and a script, served as they are — nothing to build
 * on the user's machine. Everything a pod says about itself (names, labels) is attacker-controlled:
 * the script builds the DOM with text nodes only, and the server's Content-Security-Policy allows
 * no inline script or style, so markup in a name can only ever show as text.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>icetray ui</title>
<link rel="stylesheet" href="/page.css">
<script src="/page.js" defer></script>
</head>
<body>
<header class="top">
  <h1>icetray</h1>
  <span id="node"></span>
  <span id="status" class="status">connecting…</span>
</header>
<main>
  <section id="pods" aria-label="pods"><p class="empty">No pods yet: create one (crictl runp, or a kubelet) and it appears here.</p></section>
  <aside>
    <h2>Events <small>GetContainerEvents</small></h2>
    <ol id="events"></ol>
  </aside>
</main>
<section id="detail" hidden>
  <header><h2 id="detail-title">explain</h2><button id="detail-close" type="button">close</button></header>
  <div id="detail-body"></div>
</section>
<footer>Each tray is a pod: pause holds its namespaces (inodes from /proc), each cube is a container that joins them. Click a pod for what <code>icetray explain</code> shows.</footer>
</body>
</html>
`;

export const PAGE_CSS = `
:root { --ice: #dff3fb; --tray: #9cc9dc; --ink: #16323f; --muted: #5a7684; --run: #2e9d5b; --exit: #b23b3b; --made: #c98a14; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--ink); background: #f6fafc; }
header.top { display: flex; gap: 1rem; align-items: baseline; padding: .6rem 1.2rem; background: var(--ink); color: #fff; }
header.top h1 { margin: 0; font-size: 1.3rem; letter-spacing: .05em; }
.status { margin-left: auto; font-size: .85rem; opacity: .85; }
main { display: grid; grid-template-columns: 1fr 22rem; gap: 1rem; padding: 1rem 1.2rem; }
#pods { display: flex; flex-direction: column; gap: 1rem; }
.empty { color: var(--muted); }
.tray { background: var(--ice); border: 3px solid var(--tray); border-radius: 14px; padding: .7rem .9rem 1rem; cursor: pointer;
  box-shadow: inset 0 -8px 0 rgba(80, 140, 170, .18), 0 2px 4px rgba(0, 0, 0, .08); }
.tray:hover, .tray:focus { border-color: #4d9cbd; outline: none; }
.tray > header { display: flex; gap: .6rem; align-items: baseline; flex-wrap: wrap; }
.tray h2 { margin: 0; font-size: 1.05rem; word-break: break-all; }
.pill { font-size: .75rem; padding: 0 .45rem; border-radius: 9px; background: #fff; border: 1px solid var(--tray); }
.pill.ready { background: #d7f2e1; border-color: var(--run); }
.pill.notready { background: #f6dada; border-color: var(--exit); }
.facts { margin: .3rem 0; color: var(--muted); font-size: .85rem; }
.facts b { color: var(--ink); font-weight: 600; }
.labels { display: flex; gap: .35rem; flex-wrap: wrap; }
.label { font: 11px ui-monospace, monospace; color: var(--muted); word-break: break-all; }
.nss { display: flex; gap: .35rem; flex-wrap: wrap; margin: .3rem 0 .6rem; }
.ns { font: 12px ui-monospace, monospace; background: #fff; border: 1px dashed var(--tray); border-radius: 6px; padding: .1rem .4rem; }
.cubes { display: flex; gap: 1.1rem; flex-wrap: wrap; padding-top: 10px; }
.cube { position: relative; width: 12.5rem; min-height: 8rem; padding: .5rem .6rem; background: #fff; border: 2px solid #7fb2c8;
  border-radius: 4px; font-size: .8rem; }
.cube::before { content: ""; position: absolute; left: 6px; right: -10px; top: -10px; height: 8px; background: #cbe6f1;
  border: 2px solid #7fb2c8; border-bottom: 0; transform: skewX(-45deg); transform-origin: bottom left; }
.cube::after { content: ""; position: absolute; top: -6px; right: -12px; bottom: 4px; width: 8px; background: #b3d7e6;
  border: 2px solid #7fb2c8; border-left: 0; transform: skewY(-45deg); transform-origin: top left; }
.cube b { display: block; font-size: .9rem; word-break: break-all; }
.cube.pause { background: #eef3f6; width: 10rem; }
.cube.running { border-color: var(--run); }
.cube.exited { border-color: var(--exit); background: #fbf1f1; }
.cube.created { border-color: var(--made); }
.cube .line { color: var(--muted); }
.cube meter { width: 100%; height: .7rem; }
.shared { color: var(--run); }
.own { color: var(--made); }
aside h2 { margin: 0 0 .4rem; font-size: 1rem; }
aside small { color: var(--muted); font-weight: normal; }
#events { list-style: none; margin: 0; padding: 0; font-size: .8rem; max-height: 75vh; overflow: auto; }
#events li { padding: .25rem .4rem; border-bottom: 1px solid #e3edf1; word-break: break-all; }
#events time { font: 11px ui-monospace, monospace; color: var(--muted); margin-right: .3rem; }
#events .kind { font-weight: 600; }
#detail { position: fixed; top: 3rem; right: 1rem; bottom: 1rem; width: min(44rem, 95vw); overflow: auto; background: #fff;
  border: 2px solid var(--ink); border-radius: 8px; padding: .8rem 1rem; box-shadow: 0 8px 30px rgba(0, 0, 0, .25); }
#detail > header { display: flex; justify-content: space-between; align-items: baseline; }
#detail h2 { margin: 0; font-size: 1.05rem; word-break: break-all; }
#detail h3 { margin: .8rem 0 .2rem; font-size: .95rem; }
#detail table { border-collapse: collapse; font: 12px ui-monospace, monospace; }
#detail td, #detail th { border: 1px solid #d5e3e9; padding: .1rem .4rem; text-align: left; vertical-align: top; }
#detail pre { background: #f2f6f8; padding: .4rem; font-size: 12px; white-space: pre-wrap; word-break: break-all; }
.disagree { color: var(--exit); font-weight: 600; }
footer { padding: 0 1.2rem 1rem; color: var(--muted); font-size: .8rem; }
`;

// Plain browser JavaScript; no template literals inside, so this string stays as written.
export const PAGE_JS = String.raw`'use strict';
(function () {
  var podsEl = document.getElementById('pods');
  var eventsEl = document.getElementById('events');
  var statusEl = document.getElementById('status');
  var detailEl = document.getElementById('detail');
  var detailBody = document.getElementById('detail-body');
  var detailTitle = document.getElementById('detail-title');
  var names = {};

  // Elements from text only: every string becomes a text node, never markup.
  function el(tag, className) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }
  function short(id) { return String(id).slice(0, 13); }
  function mib(bytes) { return (Number(bytes) / 1048576).toFixed(1) + ' MiB'; }
  function unlimited(limit) { return limit === 'max' || limit === '-1' || limit === '?' || Number(limit) > Math.pow(2, 60); }
  function stateWord(state) { return String(state).replace('CONTAINER_', '').replace('SANDBOX_', '').toLowerCase(); }

  function pauseCube(pod) {
    return el('div', 'cube pause',
      el('b', null, 'pause'),
      el('div', 'line', 'pid ' + (pod.pause.pid === null ? '?' : pod.pause.pid) + (pod.pause.alive ? ', running' : ', NOT running')),
      el('div', 'line', 'holds ' + pod.namespaces.map(function (ns) { return ns.kind; }).join(' ')));
  }

  function containerCube(c) {
    var shared = c.namespaces.filter(function (ns) { return ns.shared; }).map(function (ns) { return ns.kind; });
    var own = c.namespaces.filter(function (ns) { return !ns.shared; }).map(function (ns) { return ns.kind; });
    var cube = el('div', 'cube ' + stateWord(c.state),
      el('b', 'container-name', c.name),
      el('div', 'line', stateWord(c.state) + (c.pid === null ? '' : ', pid ' + c.pid) + ', attempt ' + c.attempt),
      el('div', 'line', 'restarts: ' + c.restarts),
      el('div', 'line', el('span', 'shared', 'shares ' + (shared.join(' ') || 'nothing')), ' · ', el('span', 'own', 'own ' + (own.join(' ') || 'none'))));
    var used = c.usage.memoryBytes;
    var limit = c.cgroup.memoryLimit;
    if (used !== null) {
      var text = 'memory ' + mib(used) + ' of ' + (unlimited(limit) ? 'no limit' : mib(limit));
      cube.append(el('div', 'line', text));
      if (!unlimited(limit)) {
        var meter = document.createElement('meter');
        meter.min = 0; meter.max = Number(limit); meter.value = Number(used); meter.high = Number(limit) * 0.9;
        cube.append(meter);
      }
    }
    cube.append(el('div', 'line', 'cpu ' + (c.usage.cpuNanoCores === null ? '?' : (Number(c.usage.cpuNanoCores) / 1e6).toFixed(1) + ' mCPU') +
      ' · ' + (/^(-1|max)\b/.test(c.cgroup.cpuQuota) ? 'no cpu quota' : 'quota ' + c.cgroup.cpuQuota)));
    return cube;
  }

  function tray(pod) {
    var ready = pod.state === 'SANDBOX_READY';
    var ports = pod.hostPorts.map(function (p) { return (p.hostIp || '*') + ':' + p.hostPort + '→' + p.containerPort + '/' + p.protocol; });
    var article = el('article', 'tray',
      el('header', null,
        el('h2', 'pod-name', pod.name),
        el('span', 'pill', pod.namespace),
        el('span', 'pill ' + (ready ? 'ready' : 'notready'), ready ? 'ready' : 'not ready'),
        el('span', 'pill', short(pod.id))),
      el('div', 'facts', 'IP ', el('b', null, pod.ip || '(none)'), ' · host ports ', el('b', null, ports.join(', ') || 'none')),
      el('div', 'labels', ...Object.keys(pod.labels).map(function (k) { return el('span', 'label', k + '=' + pod.labels[k]); })),
      el('div', 'nss', ...pod.namespaces.map(function (ns) { return el('span', 'ns', ns.kind + ' ' + (ns.inode === null ? '?' : ns.inode)); })),
      el('div', 'cubes', pauseCube(pod), ...pod.containers.map(containerCube)));
    article.dataset.pod = pod.id;
    article.tabIndex = 0;
    article.addEventListener('click', function () { explain(pod.id); });
    article.addEventListener('keydown', function (e) { if (e.key === 'Enter') explain(pod.id); });
    return article;
  }

  function render(view) {
    document.getElementById('node').textContent = 'node ' + view.node + ' · ' + view.pods.length + ' pod(s)';
    names = {};
    view.pods.forEach(function (pod) {
      names[pod.id] = pod.name;
      pod.containers.forEach(function (c) { names[c.id] = c.name; });
    });
    if (view.pods.length === 0) {
      podsEl.replaceChildren(el('p', 'empty', 'No pods yet: create one (crictl runp, or a kubelet) and it appears here.'));
    } else {
      podsEl.replaceChildren(...view.pods.map(tray));
    }
  }

  function addEvent(e) {
    var at = new Date(Number(BigInt(e.createdAt) / 1000000n));
    var li = el('li', null,
      el('time', null, at.toISOString().slice(11, 23)),
      el('span', 'kind', e.type), ' container ', el('b', null, e.containerName || short(e.containerId)),
      ' in pod ', e.podName || short(e.podId));
    li.dataset.container = e.containerId;
    eventsEl.prepend(li);
    while (eventsEl.children.length > 100) eventsEl.lastElementChild.remove();
  }

  function table(head, rows) {
    return el('table', null, el('tr', null, ...head.map(function (h) { return el('th', null, h); })),
      ...rows.map(function (row) { return el('tr', null, ...row.map(function (cell) { return el('td', null, String(cell)); })); }));
  }

  function disagreements(list) {
    return list.length === 0 ? el('p', null, 'records and live system agree')
      : el('ul', 'disagree', ...list.map(function (d) { return el('li', null, d); }));
  }

  function showDetail(d) {
    var p = d.pod;
    detailTitle.textContent = 'explain pod ' + p.name + ' (' + short(p.id) + ')';
    var parts = [
      el('p', null, stateWord(p.state) + ' · pause pid ' + p.pause.pid + ' — ' + (p.pause.alive ? 'running: it holds the namespaces below' : 'NOT running')),
      el('h3', null, 'namespaces (the ice tray; each container joins them)'),
      table(['kind', 'inode', 'pinned at', 'processes in it'], p.namespaces.map(function (ns) {
        return [ns.kind, ns.inode === null ? '?' : ns.inode, ns.pin, ns.members.map(function (m) { return m.pid + ' ' + m.command; }).join('\n')];
      })),
      el('h3', null, 'network'),
      el('p', null, 'IP ' + (p.network.recordedIp || '(none)') + '; ' + p.network.interface + ' has ' + (p.network.liveAddresses.join(', ') || 'no IPv4 address')),
      el('h3', null, 'hostname'),
      el('p', null, p.hostname.live === null ? p.hostname.recorded : p.hostname.live),
      el('h3', null, 'resolv.conf'),
      el('pre', null, p.resolvConf),
      disagreements(p.disagreements),
    ];
    d.containers.forEach(function (c) {
      parts.push(el('h3', null, 'container ' + c.name + ' (' + short(c.id) + '), attempt ' + c.attempt + ', ' + stateWord(c.state) + ', pid ' + c.pid));
      if (c.monitorPid !== null) parts.push(el('p', null, 'monitor: pid ' + c.monitorPid + ' (nsexec: forwards signals, records the exit)'));
      parts.push(table(['kind', 'container', 'pause', ''], c.namespaces.map(function (ns) {
        return [ns.kind, ns.container === null ? '-' : ns.container, ns.pause === null ? '-' : ns.pause, ns.shared ? "shared: the pod's" : 'its own'];
      })));
      parts.push(el('p', null, 'cgroup ' + c.cgroup.path + ' · memory limit ' + c.cgroup.memoryLimit + ' · cpu quota ' + c.cgroup.cpuQuota));
      parts.push(c.restarts.length === 0 ? el('p', null, 'no earlier attempts')
        : el('ul', null, ...c.restarts.map(function (r) { return el('li', null, r); })));
      parts.push(disagreements(c.disagreements));
    });
    detailBody.replaceChildren(...parts);
  }

  function explain(id) {
    detailEl.hidden = false;
    detailTitle.textContent = 'explain pod ' + (names[id] || short(id)) + ' …';
    detailBody.replaceChildren();
    fetch('/api/pod/' + encodeURIComponent(id)).then(function (r) {
      return r.ok ? r.json() : r.text().then(function (t) { throw new Error(t); });
    }).then(showDetail, function (err) {
      detailBody.replaceChildren(el('p', 'disagree', String(err.message)));
    });
  }
  document.getElementById('detail-close').addEventListener('click', function () { detailEl.hidden = true; });

  var source = new EventSource('/events');
  source.addEventListener('node', function (m) { render(JSON.parse(m.data)); statusEl.textContent = 'live'; });
  source.addEventListener('cri', function (m) { addEvent(JSON.parse(m.data)); });
  source.addEventListener('fault', function (m) { statusEl.textContent = JSON.parse(m.data); });
  source.onerror = function () { statusEl.textContent = 'reconnecting to icetray ui…'; };
})();
`;
