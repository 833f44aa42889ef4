// voxhub series viewer: asks the server for windowed PNG slices and keeps the neighbouring
// slices loaded ahead of scrolling. No framework; served from the voxhub binary.
(function () {
  'use strict';

  var root = document.getElementById('viewer');
  if (!root) { return; }
  var api = root.getAttribute('data-api');
  var $ = function (id) { return document.getElementById(id); };
  var el = {
    status: $('viewer-status'), error: $('viewer-error'), notVolume: $('not-volume-reason'),
    planes: $('plane-buttons'), presets: $('preset-buttons'),
    stage: $('viewer-stage'), canvas: $('viewer-canvas'), image: $('viewer-image'), overlay: $('overlay-image'),
    slider: $('slice-slider'), sliceLabel: $('slice-label'), wl: $('wl-readout'), value: $('value-readout'),
    overlayControls: $('overlay-controls'), overlayToggle: $('overlay-toggle'), overlaySelect: $('overlay-select'),
    overlayOpacity: $('overlay-opacity'), overlayOpacityLabel: $('overlay-opacity-label'), labelProblems: $('label-problems'),
    nifti: $('download-nifti'), metadataPanel: $('metadata-panel'), metadataTable: $('metadata-table'),
    metadataFilter: $('metadata-filter'), panMode: $('pan-mode'), corner: $('slice-corner'),
    edges: { top: $('edge-top'), bottom: $('edge-bottom'), left: $('edge-left'), right: $('edge-right') }
  };

  var PREFETCH_AHEAD = 12;      // slices loaded on each side of the shown one first
  var PREFETCH_PARALLEL = 4;    // requests in flight while prefetching
  var PREFETCH_LIMIT = 400;     // images asked for ahead, and kept, at most

  var info = null;
  var s = {
    plane: null, index: {}, center: 0, width: 1, preset: null, colour: false,
    zoom: 1, panX: 0, panY: 0, panMode: false,
    overlayOn: false, overlaySeries: null, opacity: 0.5
  };
  var loaded = new Map();       // url -> Image, loaded (or loading)
  var prefetchQueue = [];
  var prefetching = 0;
  var shownUrl = null;

  function setStatus(text) { el.status.textContent = text; el.status.hidden = !text; }
  function showError(text) { el.error.textContent = text; el.error.hidden = !text; }

  function plane() {
    for (var i = 0; i < info.planes.length; i++) {
      if (info.planes[i].name === s.plane) { return info.planes[i]; }
    }
    return info.planes[0];
  }

  function round(value) { return Math.round(value * 10) / 10; }

  function sliceUrl(planeName, index) {
    var query = 'v=' + encodeURIComponent(info.version);
    if (!s.colour) {
      query += '&center=' + encodeURIComponent(round(s.center)) + '&width=' + encodeURIComponent(round(s.width));
    }
    return api + '/slices/' + planeName + '/' + index + '.png?' + query;
  }

  function overlayUrl(planeName, index) {
    return api + '/overlay/' + s.overlaySeries + '/' + planeName + '/' + index + '.png?v=' + encodeURIComponent(info.version);
  }

  // --- layout ---------------------------------------------------------------------------

  function layout() {
    var p = plane();
    if (!p) { return; }
    var stageWidth = el.stage.clientWidth, stageHeight = el.stage.clientHeight;
    var width = p.display_columns, height = p.display_rows;
    if (el.image.naturalWidth && s.plane === 'stack') { width = el.image.naturalWidth; height = el.image.naturalHeight; }
    var fit = Math.min(stageWidth / width, stageHeight / height);
    var w = Math.max(1, Math.floor(width * fit)), h = Math.max(1, Math.floor(height * fit));
    el.canvas.style.width = w + 'px';
    el.canvas.style.height = h + 'px';
    el.canvas.style.left = Math.floor((stageWidth - w) / 2) + 'px';
    el.canvas.style.top = Math.floor((stageHeight - h) / 2) + 'px';
    el.canvas.style.transform = 'translate(' + s.panX + 'px,' + s.panY + 'px) scale(' + s.zoom + ')';
  }

  function setZoom(zoom) {
    s.zoom = Math.min(20, Math.max(0.25, zoom));
    layout();
  }

  // --- showing a slice ------------------------------------------------------------------

  function readout() {
    if (s.colour) { el.wl.textContent = 'colour image, shown as stored'; return; }
    var name = '';
    if (s.preset) {
      var button = el.presets.querySelector('[data-preset="' + s.preset + '"]');
      if (button) { name = ' (' + button.textContent + ')'; }
    }
    el.wl.textContent = 'center ' + round(s.center) + ' / width ' + round(s.width) + name;
    var buttons = el.presets.querySelectorAll('button');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute('aria-pressed', String(buttons[i].getAttribute('data-preset') === s.preset));
    }
  }

  function request(url) {
    var image = loaded.get(url);
    if (image) { return image; }
    image = new Image();
    image.decoding = 'async';
    image.src = url;
    loaded.set(url, image);
    if (loaded.size > PREFETCH_LIMIT) {
      // Forget the oldest; the browser's own cache still has them.
      var first = loaded.keys().next().value;
      loaded.delete(first);
    }
    return image;
  }

  function show() {
    var p = plane();
    var index = s.index[p.name];
    var url = sliceUrl(p.name, index);
    shownUrl = url;
    var image = request(url);
    var apply = function () {
      if (shownUrl !== url) { return; }
      el.image.src = url;
      el.image.alt = describe(p, index);
      showError('');
      layout();
    };
    var failed = function () {
      loaded.delete(url); // asked again next time
      if (shownUrl === url) { explainFailure(url); }
    };
    if (image.complete && image.naturalWidth) { apply(); }
    else if (image.complete) { failed(); }
    else {
      image.addEventListener('load', apply, { once: true });
      image.addEventListener('error', failed, { once: true });
    }
    el.slider.max = String(p.slices - 1);
    el.slider.value = String(index);
    el.slider.setAttribute('aria-valuetext', 'slice ' + (index + 1) + ' of ' + p.slices);
    el.sliceLabel.textContent = (index + 1) + ' of ' + p.slices;
    el.corner.textContent = (p.name === 'stack' ? 'image ' : p.name + ' ') + (index + 1) + '/' + p.slices;
    if (p.edges) {
      el.edges.top.textContent = p.edges.top; el.edges.bottom.textContent = p.edges.bottom;
      el.edges.left.textContent = p.edges.left; el.edges.right.textContent = p.edges.right;
    }
    showOverlay();
    readout();
    schedulePrefetch(p, index);
    scheduleMetadata();
  }

  function describe(p, index) {
    var what = p.name === 'stack' ? 'Image' : p.name.charAt(0).toUpperCase() + p.name.slice(1) + ' slice';
    return what + ' ' + (index + 1) + ' of ' + p.slices + (s.colour ? '' : ', window center ' + round(s.center) + ' width ' + round(s.width));
  }

  function explainFailure(url) {
    fetch(url, { credentials: 'same-origin' }).then(function (response) {
      if (response.ok) { return null; }
      return response.json().then(function (body) { return body.error.message; }, function () { return 'the image could not be loaded (' + response.status + ')'; });
    }).then(function (message) {
      if (message) { showError(message); }
    }, function () { showError('the image could not be loaded; check your connection'); });
  }

  function showOverlay() {
    if (!s.overlayOn || !s.overlaySeries || !info.volume) { el.overlay.hidden = true; return; }
    var p = plane();
    el.overlay.src = overlayUrl(p.name, s.index[p.name]);
    el.overlay.style.opacity = String(s.opacity);
    el.overlay.hidden = false;
  }

  function go(index) {
    var p = plane();
    var next = Math.max(0, Math.min(p.slices - 1, index));
    if (next === s.index[p.name]) { return; }
    s.index[p.name] = next;
    show();
  }

  function step(delta) { go(s.index[plane().name] + delta); }

  // --- prefetching ----------------------------------------------------------------------

  function schedulePrefetch(p, index) {
    prefetchQueue = [];
    for (var d = 1; d <= p.slices; d++) {
      if (d > PREFETCH_LIMIT / 2) { break; }
      if (index + d < p.slices) { prefetchQueue.push(sliceUrl(p.name, index + d)); }
      if (index - d >= 0) { prefetchQueue.push(sliceUrl(p.name, index - d)); }
      if (d === PREFETCH_AHEAD) { prefetchQueue.push(null); } // a pause marker: nearer ones first
    }
    pump();
  }

  function pump() {
    while (prefetching < PREFETCH_PARALLEL && prefetchQueue.length) {
      var url = prefetchQueue.shift();
      if (url === null || loaded.has(url)) { continue; }
      prefetching++;
      var image = request(url);
      var done = function () { prefetching--; pump(); };
      if (image.complete) { prefetching--; continue; }
      image.addEventListener('load', done, { once: true });
      image.addEventListener('error', done, { once: true });
    }
  }

  // --- window and level -----------------------------------------------------------------

  function setWindow(center, width, preset) {
    s.center = center;
    s.width = Math.max(1, width);
    s.preset = preset || null;
    show();
  }

  function applyPreset(name) {
    for (var i = 0; i < info.presets.length; i++) {
      var preset = info.presets[i];
      if (preset.name === name) { setWindow(preset.center, preset.width, name); return; }
    }
  }

  // --- the value under the cursor -------------------------------------------------------

  var valueTimer = null, valueInFlight = false, valuePending = null;

  function pointer(event) {
    var rect = el.image.getBoundingClientRect();
    if (!rect.width || !rect.height) { return null; }
    var fx = (event.clientX - rect.left) / rect.width, fy = (event.clientY - rect.top) / rect.height;
    if (fx < 0 || fy < 0 || fx >= 1 || fy >= 1) { return null; }
    var p = plane();
    var columns = p.columns, rows = p.rows;
    if (p.name === 'stack' && el.image.naturalWidth && el.image.naturalWidth !== p.display_columns) {
      columns = el.image.naturalWidth; rows = el.image.naturalHeight;
    }
    return { x: Math.floor(fx * columns), y: Math.floor(fy * rows) };
  }

  function patientPosition(mm) {
    if (!mm) { return ''; }
    var part = function (value, positive, negative) {
      return (value >= 0 ? positive : negative) + ' ' + Math.abs(value).toFixed(1);
    };
    return ' · position ' + part(mm[0], 'L', 'R') + ', ' + part(mm[1], 'P', 'A') + ', ' + part(mm[2], 'S', 'I') + ' mm';
  }

  function formatValue(value) {
    if (value === null || value === undefined) { return 'no value'; }
    if (Array.isArray(value)) { return 'red ' + value[0] + ', green ' + value[1] + ', blue ' + value[2]; }
    return String(Math.round(value * 100) / 100);
  }

  function askValue(at) {
    if (valueInFlight) { valuePending = at; return; }
    valueInFlight = true;
    var p = plane();
    var url = api + '/value?plane=' + p.name + '&index=' + s.index[p.name] + '&x=' + at.x + '&y=' + at.y;
    fetch(url, { credentials: 'same-origin' }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (answer.ok) {
        var units = answer.body.units === 'RGB' ? '' : ' ' + answer.body.units;
        el.value.textContent = formatValue(answer.body.value) + units + ' at pixel (' + at.x + ', ' + at.y + ')' + patientPosition(answer.body.position_mm);
      }
    }, function () {}).then(function () {
      valueInFlight = false;
      if (valuePending) { var next = valuePending; valuePending = null; askValue(next); }
    });
  }

  // --- metadata -------------------------------------------------------------------------

  var metadataTimer = null, metadataFor = null;

  function scheduleMetadata() {
    if (!el.metadataPanel.open) { return; }
    clearTimeout(metadataTimer);
    metadataTimer = setTimeout(loadMetadata, 250);
  }

  function loadMetadata() {
    var p = plane();
    var key = p.name + '/' + s.index[p.name];
    if (metadataFor === key) { return; }
    metadataFor = key;
    fetch(api + '/metadata?plane=' + p.name + '&index=' + s.index[p.name], { credentials: 'same-origin' })
      .then(function (response) { return response.json().then(function (body) { return { ok: response.ok, body: body }; }); })
      .then(function (answer) {
        var body = el.metadataTable.tBodies[0];
        body.textContent = '';
        if (!answer.ok) { metadataRow(body, ['', '', '', answer.body.error.message]); return; }
        answer.body.attributes.forEach(function (a) { metadataRow(body, [a.tag, a.keyword, a.vr, a.value]); });
        filterMetadata();
      }, function () { metadataFor = null; });
  }

  function metadataRow(body, cells) {
    var row = document.createElement('tr');
    cells.forEach(function (text) { var cell = document.createElement('td'); cell.textContent = text; row.appendChild(cell); });
    body.appendChild(row);
  }

  function filterMetadata() {
    var wanted = el.metadataFilter.value.trim().toLowerCase();
    var rows = el.metadataTable.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      rows[i].hidden = wanted !== '' && rows[i].textContent.toLowerCase().indexOf(wanted) < 0;
    }
  }

  // --- input ----------------------------------------------------------------------------

  var drag = null, wheelRest = 0, dragTimer = null;

  function bind() {
    el.slider.addEventListener('input', function () { go(parseInt(el.slider.value, 10)); });
    el.planes.addEventListener('click', function (event) {
      var button = event.target.closest('button[data-plane]');
      if (!button) { return; }
      s.plane = button.getAttribute('data-plane');
      var buttons = el.planes.querySelectorAll('button');
      for (var i = 0; i < buttons.length; i++) { buttons[i].setAttribute('aria-pressed', String(buttons[i] === button)); }
      s.panX = 0; s.panY = 0; s.zoom = 1;
      show();
    });
    el.presets.addEventListener('click', function (event) {
      var button = event.target.closest('button[data-preset]');
      if (button) { applyPreset(button.getAttribute('data-preset')); }
    });
    $('zoom-in').addEventListener('click', function () { setZoom(s.zoom * 1.25); });
    $('zoom-out').addEventListener('click', function () { setZoom(s.zoom / 1.25); });
    $('zoom-reset').addEventListener('click', function () { s.panX = 0; s.panY = 0; setZoom(1); });
    el.panMode.addEventListener('click', function () {
      s.panMode = !s.panMode;
      el.panMode.setAttribute('aria-pressed', String(s.panMode));
      el.stage.classList.toggle('pan-mode', s.panMode);
    });

    el.stage.addEventListener('wheel', function (event) {
      event.preventDefault();
      if (event.ctrlKey || event.metaKey) {
        setZoom(s.zoom * (event.deltaY < 0 ? 1.1 : 1 / 1.1));
        return;
      }
      if (!event.deltaY) { return; }
      // A wheel notch is one slice; small touchpad movements add up to one.
      if (event.deltaMode !== 0 || Math.abs(event.deltaY) >= 50) {
        wheelRest = 0;
        step(event.deltaY > 0 ? 1 : -1);
        return;
      }
      wheelRest += event.deltaY;
      if (Math.abs(wheelRest) >= 30) {
        step(wheelRest > 0 ? 1 : -1);
        wheelRest = 0;
      }
    }, { passive: false });

    el.stage.addEventListener('contextmenu', function (event) { event.preventDefault(); });
    el.stage.addEventListener('mousedown', function (event) {
      el.stage.focus();
      var pan = event.button === 1 || (event.button === 0 && s.panMode);
      var level = !pan && (event.button === 0 || event.button === 2) && !s.colour;
      if (!pan && !level) { return; }
      event.preventDefault();
      drag = { pan: pan, x: event.clientX, y: event.clientY, panX: s.panX, panY: s.panY, center: s.center, width: s.width };
      el.stage.classList.add('dragging');
    });
    window.addEventListener('mousemove', function (event) {
      if (drag) {
        var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
        if (drag.pan) {
          s.panX = drag.panX + dx; s.panY = drag.panY + dy;
          layout();
        } else {
          // Sideways: width; up and down: center; in steps that grow with the width.
          var scale = Math.max(drag.width, 10) / 256;
          s.width = Math.max(1, drag.width + dx * scale * 2);
          s.center = drag.center - dy * scale;
          s.preset = null;
          readout();
          clearTimeout(dragTimer);
          dragTimer = setTimeout(showDragged, 30);
        }
        return;
      }
      if (event.target === el.image || event.target === el.overlay) {
        var at = pointer(event);
        if (at) {
          clearTimeout(valueTimer);
          valueTimer = setTimeout(function () { askValue(at); }, 40);
        }
      }
    });
    window.addEventListener('mouseup', function () {
      if (!drag) { return; }
      var wasLevel = !drag.pan;
      drag = null;
      el.stage.classList.remove('dragging');
      if (wasLevel) { clearTimeout(dragTimer); show(); }
    });
    el.image.addEventListener('mouseleave', function () { el.value.textContent = '–'; });

    el.stage.addEventListener('keydown', function (event) {
      var p = plane();
      var handled = true;
      switch (event.key) {
        case 'ArrowUp': case 'ArrowRight': step(1); break;
        case 'ArrowDown': case 'ArrowLeft': step(-1); break;
        case 'PageUp': step(10); break;
        case 'PageDown': step(-10); break;
        case 'Home': go(0); break;
        case 'End': go(p.slices - 1); break;
        case '+': case '=': setZoom(s.zoom * 1.25); break;
        case '-': case '_': setZoom(s.zoom / 1.25); break;
        case '0': s.panX = 0; s.panY = 0; setZoom(1); break;
        default: handled = false;
      }
      if (handled) { event.preventDefault(); }
    });
    // Page Up / Page Down also work on the slider.
    el.slider.addEventListener('keydown', function (event) {
      if (event.key === 'PageUp') { event.preventDefault(); step(10); }
      if (event.key === 'PageDown') { event.preventDefault(); step(-10); }
    });

    el.overlayToggle.addEventListener('change', function () { s.overlayOn = el.overlayToggle.checked; showOverlay(); });
    el.overlaySelect.addEventListener('change', function () { s.overlaySeries = el.overlaySelect.value; showOverlay(); });
    el.overlayOpacity.addEventListener('input', function () {
      s.opacity = parseInt(el.overlayOpacity.value, 10) / 100;
      el.overlayOpacityLabel.textContent = el.overlayOpacity.value + '%';
      el.overlay.style.opacity = String(s.opacity);
    });
    el.metadataPanel.addEventListener('toggle', function () { if (el.metadataPanel.open) { metadataFor = null; loadMetadata(); } });
    el.metadataFilter.addEventListener('input', filterMetadata);
    window.addEventListener('resize', layout);
    el.image.addEventListener('load', layout);
  }

  var dragShown = true;
  function showDragged() {
    // One window request at a time while dragging, so the server is not flooded.
    if (!dragShown) { dragTimer = setTimeout(showDragged, 30); return; }
    var p = plane();
    var url = sliceUrl(p.name, s.index[p.name]);
    dragShown = false;
    var image = request(url);
    var done = function () { dragShown = true; if (image.naturalWidth) { el.image.src = url; } };
    if (image.complete) { done(); } else {
      image.addEventListener('load', done, { once: true });
      image.addEventListener('error', done, { once: true });
    }
  }

  // --- start ----------------------------------------------------------------------------

  function start(body) {
    info = body;
    if (info.decode_error) {
      setStatus('');
      showError('These images cannot be shown: ' + info.decode_error);
      return;
    }
    if (!info.planes.length) {
      setStatus('This series has no images to show' + (info.not_volume_reason ? ': ' + info.not_volume_reason + '.' : '.'));
      return;
    }
    info.planes.forEach(function (p) { s.index[p.name] = p.start; });
    s.plane = info.planes[0].name;
    s.colour = info.colour;
    if (info.window) { s.center = info.window.center; s.width = info.window.width; }
    // The opening window is the file's own (or the automatic one): its button is pressed.
    info.presets.forEach(function (p) {
      if (p.name === 'file' && info.window && p.center === info.window.center && p.width === info.window.width) { s.preset = 'file'; }
    });
    el.planes.hidden = !info.volume;
    if (!info.volume && info.not_volume_reason) {
      el.notVolume.textContent = 'This series is shown image by image, not as a volume, so it has no coronal or sagittal views and no NIfTI download: ' + info.not_volume_reason + '.';
      el.notVolume.hidden = false;
    }
    if (info.volume && info.nifti) { el.nifti.href = info.nifti; el.nifti.hidden = false; }
    var labels = {};
    info.presets.forEach(function (p) { labels[p.name] = p.label; });
    var buttons = el.presets.querySelectorAll('button');
    for (var i = 0; i < buttons.length; i++) {
      var label = labels[buttons[i].getAttribute('data-preset')];
      buttons[i].hidden = !label;
      if (label) { buttons[i].textContent = label; }
    }
    el.presets.hidden = s.colour;
    if (info.labels.length) {
      info.label_series.forEach(function (label) {
        if (!label.compatible) { return; }
        var option = document.createElement('option');
        option.value = String(label.series);
        option.textContent = label.description || ('series ' + label.series);
        el.overlaySelect.appendChild(option);
      });
      s.overlaySeries = String(info.labels[0]);
      el.overlayControls.hidden = false;
    }
    var problems = info.label_series.filter(function (label) { return !label.compatible; });
    if (problems.length) {
      problems.forEach(function (label) {
        var item = document.createElement('li');
        item.textContent = 'Mask “' + (label.description || label.series) + '” cannot be shown: ' + label.reason;
        el.labelProblems.appendChild(item);
      });
      el.labelProblems.hidden = false;
    }
    el.slider.disabled = false;
    setStatus('');
    bind();
    show();
  }

  function load(attempt) {
    fetch(api + '/view', { credentials: 'same-origin' }).then(function (response) {
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    }).then(function (answer) {
      if (answer.status === 200) { start(answer.body); return; }
      if (answer.status === 409 && answer.body.error && answer.body.error.code === 'series_not_ready' && attempt < 150) {
        setStatus('The series is still being prepared after its upload; it opens by itself in a moment…');
        setTimeout(function () { load(attempt + 1); }, 2000);
        return;
      }
      setStatus('');
      showError(answer.body.error ? answer.body.error.message : 'the series could not be opened');
    }, function () {
      setStatus('');
      showError('The series could not be loaded; check your connection and reload the page.');
    });
  }

  load(0);
}());
