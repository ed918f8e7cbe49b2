/* Dependency-free SVG charts for the dashboard: bars or a line over labelled axes.
 *
 * Charts.draw(container, points, options) replaces the container's content with one <svg>:
 *   points:  [{label, value, title}] in x order (label: the x tick text, title: the tooltip)
 *   options: {kind: "bars" | "line", title, xLabel, yLabel}
 * Every bar is a <rect class="bar" data-label data-value>; the line is a <path class="line" data-count>.
 * The chart is drawn at the container's pixel width, so text keeps its size on a phone.
 */
"use strict";

const Charts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const HEIGHT = 260;
  const MARGIN = { top: 14, right: 14, bottom: 54, left: 66 };
  const MIN_LABEL_SPACING = 58;

  function node(name, attributes = {}, text = undefined) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  /** Round tick values from 0 to at least `max`: steps of 1, 2, 2.5 or 5 times a power of ten. */
  function ticks(max, count = 5) {
    if (!(max > 0)) return { top: 1, values: [0, 0.5, 1] };
    const raw = max / count;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((factor) => factor * magnitude).find((s) => s >= raw);
    const top = Math.ceil(max / step - 1e-9) * step;
    const values = [];
    for (let index = 0; index * step <= top + step / 2; index += 1) {
      values.push(Number((index * step).toPrecision(12)));
    }
    return { top, values };
  }

  function tickText(value) {
    return value.toLocaleString("en", { maximumFractionDigits: 4 });
  }

  function draw(container, points, options) {
    const width = Math.max(280, Math.floor(container.clientWidth || 640));
    const plotWidth = width - MARGIN.left - MARGIN.right;
    const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    const baseline = MARGIN.top + plotHeight;
    const { top, values } = ticks(Math.max(0, ...points.map((p) => p.value)));
    const y = (value) => baseline - (value / top) * plotHeight;
    const slot = plotWidth / Math.max(1, points.length);
    const svg = node("svg", {
      class: `chart chart-${options.kind}`,
      width,
      height: HEIGHT,
      viewBox: `0 0 ${width} ${HEIGHT}`,
      role: "img",
      "aria-label": options.title,
    });

    for (const value of values) {
      const at = y(value).toFixed(2);
      svg.append(node("line", { class: "grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: at, y2: at }));
      svg.append(node("text", { class: "tick", x: MARGIN.left - 6, y: at, "text-anchor": "end", dy: "0.32em" }, tickText(value)));
    }
    const every = Math.max(1, Math.ceil(points.length / Math.max(1, Math.floor(plotWidth / MIN_LABEL_SPACING))));
    points.forEach((point, index) => {
      if (index % every !== 0) return;
      const x = (MARGIN.left + slot * (index + 0.5)).toFixed(2);
      svg.append(node("text", { class: "tick", x, y: baseline + 16, "text-anchor": "middle" }, point.label));
    });
    svg.append(node("line", { class: "axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: baseline, y2: baseline }));
    svg.append(node("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: baseline }));
    svg.append(node("text", { class: "axis-title", x: MARGIN.left + plotWidth / 2, y: HEIGHT - 8, "text-anchor": "middle" }, options.xLabel));
    svg.append(
      node("text", { class: "axis-title", transform: `translate(14 ${MARGIN.top + plotHeight / 2}) rotate(-90)`, "text-anchor": "middle" }, options.yLabel),
    );

    if (options.kind === "line") {
      const path = points
        .map((point, index) => `${index ? "L" : "M"}${(MARGIN.left + slot * (index + 0.5)).toFixed(2)},${y(point.value).toFixed(2)}`)
        .join("");
      svg.append(node("path", { class: "line", d: path, "data-count": points.length }));
    } else {
      const barWidth = Math.max(1, slot * 0.8);
      points.forEach((point, index) => {
        const barTop = y(point.value);
        const bar = node("rect", {
          class: "bar",
          x: (MARGIN.left + slot * index + (slot - barWidth) / 2).toFixed(2),
          y: barTop.toFixed(2),
          width: barWidth.toFixed(2),
          height: (baseline - barTop).toFixed(2),
          "data-label": point.label,
          "data-value": point.value,
        });
        bar.append(node("title", {}, point.title));
        svg.append(bar);
      });
    }
    container.replaceChildren(svg);
    return svg;
  }

  return { draw, ticks };
})();
