// The one way a chart reaches the page: an attachment that creates a chart.js
// line chart on its canvas and destroys it with the element. Data changes go
// through chart.update('none'): no animation on streaming data, and every
// series is handed over pre-parsed ({x, y}, parsing: false) and already bounded
// (decimateMinMax), with chart.js's own min-max decimation as a second guard.

import {
  Chart,
  Decimation,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartDataset,
} from 'chart.js';
import { untrack } from 'svelte';
import type { Attachment } from 'svelte/attachments';
import type { Point } from './smoothing.ts';

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Tooltip, Decimation);

export interface Series {
  label: string;
  points: readonly Point[];
  /** A CSS colour or var(--name). */
  color: string;
  /** Drawn thin and translucent (raw loss under its smoothed curve). */
  faint?: boolean;
  /** Markers on each point (sparse series such as evaluations). */
  markers?: boolean;
}

export interface ChartOptions {
  xLabel?: string;
  yLabel?: string;
  yMin?: number;
  yMax?: number;
  legend?: boolean;
}

function resolveColor(el: Element, color: string): string {
  const m = /^var\((--[\w-]+)\)$/.exec(color);
  return m ? getComputedStyle(el).getPropertyValue(m[1]).trim() || '#888' : color;
}

/** '#rrggbb' at the given opacity (canvas colours cannot use color-mix everywhere). */
function withAlpha(color: string, alpha: number): string {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  return m ? `rgba(${parseInt(m[1], 16)}, ${parseInt(m[2], 16)}, ${parseInt(m[3], 16)}, ${alpha})` : color;
}

function toDatasets(el: Element, series: readonly Series[]): ChartDataset<'line', Point[]>[] {
  return series.map((s) => {
    const color = resolveColor(el, s.color);
    return {
      label: s.label,
      data: s.points as Point[],
      borderColor: s.faint ? withAlpha(color, 0.35) : color,
      backgroundColor: color,
      borderWidth: s.faint ? 1 : 2,
      pointRadius: s.markers ? 3 : 0,
      pointHoverRadius: 4,
      tension: 0,
      spanGaps: true,
    };
  });
}

/** Attach with `{@attach lineChart(() => series, options)}`; `series` is read reactively. */
export function lineChart(getSeries: () => readonly Series[], options: ChartOptions = {}): Attachment<HTMLCanvasElement> {
  return (canvas) => {
    const style = getComputedStyle(canvas);
    const text = style.getPropertyValue('--text-muted').trim() || '#666';
    const grid = style.getPropertyValue('--border').trim() || '#ddd';
    const chart = untrack(
      () =>
        new Chart<'line', Point[]>(canvas, {
          type: 'line',
          data: { datasets: toDatasets(canvas, getSeries()) },
          options: {
            animation: false,
            parsing: false,
            normalized: true,
            responsive: true,
            maintainAspectRatio: false,
            interaction: { mode: 'nearest', axis: 'x', intersect: false },
            scales: {
              x: { type: 'linear', title: { display: !!options.xLabel, text: options.xLabel, color: text }, ticks: { color: text }, grid: { color: grid } },
              y: {
                type: 'linear',
                min: options.yMin,
                max: options.yMax,
                title: { display: !!options.yLabel, text: options.yLabel, color: text },
                ticks: { color: text },
                grid: { color: grid },
              },
            },
            plugins: {
              legend: { display: options.legend ?? true, labels: { color: text, boxWidth: 12 } },
              decimation: { enabled: true, algorithm: 'min-max' },
              tooltip: { animation: false },
            },
          },
        }),
    );
    $effect(() => {
      const datasets = toDatasets(canvas, getSeries());
      chart.data.datasets = datasets;
      chart.update('none');
    });
    return () => chart.destroy();
  };
}
