// The one way a chart reaches the page: an attachment that creates a chart.js
// line chart on its canvas and destroys it with the element. Data and option
// changes (axis, log scale) go through chart.update('none'): no animation on
// streaming data, and every series is handed over pre-parsed ({x, y}, parsing:
// false) and already bounded (decimateMinMax), with chart.js's own min-max
// decimation as a second guard.

import {
  Chart,
  Decimation,
  Legend,
  LinearScale,
  LineController,
  LogarithmicScale,
  LineElement,
  PointElement,
  Tooltip,
  type ChartDataset,
} from 'chart.js';
import { untrack } from 'svelte';
import type { Attachment } from 'svelte/attachments';
import { formatSeconds } from './format.ts';
import type { Point } from './smoothing.ts';

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, Legend, Tooltip, Decimation);

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
  /** x is seconds: ticks read "42 s", then as a clock ("1:30"). */
  xSeconds?: boolean;
  /** A logarithmic y axis (points at or below 0 are not drawn). */
  logY?: boolean;
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

/** The axes for `options`, in the page's colours. */
function scales(options: ChartOptions, text: string, grid: string) {
  const positive = (v: number | undefined) => (options.logY && v !== undefined && v <= 0 ? undefined : v);
  return {
    x: {
      type: 'linear' as const,
      title: { display: !!options.xLabel, text: options.xLabel, color: text },
      ticks: { color: text, ...(options.xSeconds ? { callback: (v: number | string) => formatSeconds(Number(v)) } : {}) },
      grid: { color: grid },
    },
    y: {
      type: options.logY ? ('logarithmic' as const) : ('linear' as const),
      min: positive(options.yMin),
      max: options.yMax,
      title: { display: !!options.yLabel, text: options.yLabel, color: text },
      ticks: { color: text },
      grid: { color: grid },
    },
  };
}

/**
 * Attach with `{@attach lineChart(() => series, () => options)}`; both are read reactively: new data
 * or new options (axis, log scale) update the chart in place.
 */
export function lineChart(getSeries: () => readonly Series[], getOptions: () => ChartOptions = () => ({})): Attachment<HTMLCanvasElement> {
  return (canvas) => {
    const style = getComputedStyle(canvas);
    const text = style.getPropertyValue('--text-muted').trim() || '#666';
    const grid = style.getPropertyValue('--border').trim() || '#ddd';
    const chart = untrack(() => {
      const options = getOptions();
      return new Chart<'line', Point[]>(canvas, {
        type: 'line',
        data: { datasets: toDatasets(canvas, getSeries()) },
        options: {
          animation: false,
          parsing: false,
          normalized: true,
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: 'nearest', axis: 'x', intersect: false },
          scales: scales(options, text, grid),
          plugins: {
            legend: { display: options.legend ?? true, labels: { color: text, boxWidth: 12 } },
            decimation: { enabled: true, algorithm: 'min-max' },
            tooltip: { animation: false },
          },
        },
      });
    });
    $effect(() => {
      chart.data.datasets = toDatasets(canvas, getSeries());
      chart.options.scales = scales(getOptions(), text, grid);
      chart.update('none');
    });
    return () => chart.destroy();
  };
}
