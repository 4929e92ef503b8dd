import type uPlot from 'uplot';
import type { LayerGateSummary } from '../../engine/gate-summary.js';

/**
 * The report page's script: draws its charts with uPlot from the data embedded in the page. It runs in
 * the browser, inlined into the page as its source text (page.ts), so it must use nothing from outside
 * its own body but its two arguments: no imports at run time, no module-level helpers.
 */

export interface ReportData {
  readonly phases: readonly { readonly name: string; readonly from: number; readonly to: number }[];
  readonly steps: readonly number[];
  readonly loss: readonly (number | null)[];
  readonly auxLoss: readonly (number | null)[];
  readonly trainAccuracy: readonly (number | null)[];
  readonly testAccuracy: readonly (number | null)[];
  readonly kept: readonly (number | null)[];
  readonly marks: readonly { readonly step: number; readonly kind: 'failure' | 'recovery' | 'resume'; readonly text: string }[];
  /** The gate summary's figures per layer (types only: nothing is imported at run time). */
  readonly layers: readonly Omit<LayerGateSummary, 'group' | 'histogram'>[];
}

export function drawReport(data: ReportData, plot: typeof uPlot): void {
  const width = 880;
  const phaseColours = ['rgba(66,133,244,0.08)', 'rgba(219,68,55,0.08)', 'rgba(15,157,88,0.08)', 'rgba(244,180,0,0.10)'];
  const markColours = { failure: '#d93025', recovery: '#188038', resume: '#1a73e8' };
  // Each chart gets its own element in #charts, in drawing order.
  const section = (id: string) => {
    const element = document.createElement('div');
    element.id = id;
    element.className = 'chart';
    (document.getElementById('charts') as HTMLElement).appendChild(element);
    return element;
  };

  // Phases shaded behind the series, and failures, recoveries and resumes as vertical lines over them.
  const timeline = {
    drawClear: [
      (u: uPlot) => {
        const { ctx } = u;
        const { top, height } = u.bbox;
        data.phases.forEach((phase, i) => {
          const left = u.valToPos(phase.from, 'x', true);
          const right = u.valToPos(phase.to, 'x', true);
          ctx.fillStyle = phaseColours[i % phaseColours.length] as string;
          ctx.fillRect(left, top, right - left, height);
          ctx.fillStyle = '#555';
          ctx.font = `${12 * devicePixelRatio}px sans-serif`;
          ctx.fillText(phase.name, left + 4 * devicePixelRatio, top + 14 * devicePixelRatio);
        });
      },
    ],
    draw: [
      (u: uPlot) => {
        const { ctx } = u;
        const { top, height } = u.bbox;
        for (const mark of data.marks) {
          const x = u.valToPos(mark.step, 'x', true);
          ctx.strokeStyle = markColours[mark.kind];
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
          ctx.setLineDash([]);
        }
      },
    ],
  };

  const stepChart = (
    id: string,
    title: string,
    series: { label: string; values: readonly (number | null)[]; stroke: string; points?: boolean }[],
    range?: [number, number],
  ) => {
    const options: uPlot.Options = {
      title,
      width,
      height: 260,
      scales: { x: { time: false }, ...(range ? { y: { range } } : {}) },
      axes: [{ label: 'step' }, {}],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.stroke,
          width: 2,
          spanGaps: true,
          ...(s.points ? { points: { show: true, size: 7, fill: s.stroke } } : { points: { show: false } }),
        })),
      ],
      hooks: timeline,
    };
    const values = [data.steps, ...series.map((s) => s.values)] as unknown as uPlot.AlignedData;
    new plot(options, values, section(id));
  };

  const barChart = (id: string, title: string, names: readonly string[], series: { label: string; values: readonly number[]; fill: string }[]) => {
    const bars = plot.paths.bars!({ size: [0.7, 60], gap: 2 });
    const xs = names.map((_, i) => i);
    const options: uPlot.Options = {
      title,
      width,
      height: 280,
      scales: { x: { time: false, range: [-0.5, names.length - 0.5] } },
      axes: [{ values: (_u: uPlot, splits: number[]) => splits.map((i) => names[i] ?? ''), space: 40, incrs: [1] }, { size: 70 }],
      series: [{}, ...series.map((s) => ({ label: s.label, fill: s.fill, stroke: s.fill, paths: bars, points: { show: false } }))],
    };
    new plot(options, [xs, ...series.map((s) => s.values)] as unknown as uPlot.AlignedData, section(id));
  };

  if (data.steps.length > 0) {
    stepChart('loss', 'Loss', [
      { label: 'W (training loss)', values: data.loss, stroke: '#1a73e8' },
      { label: 'M (auxiliary loss)', values: data.auxLoss, stroke: '#e8710a' },
    ]);
    stepChart(
      'accuracy',
      'Accuracy',
      [
        { label: 'train (batch)', values: data.trainAccuracy, stroke: '#9aa0a6' },
        { label: 'test', values: data.testAccuracy, stroke: '#188038', points: true },
      ],
      [0, 1],
    );
    stepChart('kept', 'Fraction of prunable weights kept', [{ label: 'kept', values: data.kept, stroke: '#a142f4' }], [0, 1]);
  }
  if (data.layers.length > 0) {
    const names = data.layers.map((l) => l.name);
    barChart('layer-weights', 'Weights per layer: dense and kept', names, [
      { label: 'dense', values: data.layers.map((l) => l.params), fill: 'rgba(154,160,166,0.6)' },
      { label: 'kept', values: data.layers.map((l) => l.kept), fill: 'rgba(26,115,232,0.85)' },
    ]);
    barChart('layer-flops', 'MACs per layer: dense and kept', names, [
      { label: 'dense', values: data.layers.map((l) => l.flops), fill: 'rgba(154,160,166,0.6)' },
      { label: 'kept', values: data.layers.map((l) => l.flopsKept), fill: 'rgba(232,113,10,0.85)' },
    ]);
    const neuron = data.layers.filter((l) => l.granularity === 'neuron');
    if (neuron.length > 0) {
      barChart(
        'layer-channels',
        'Channels per layer (neuron gates): all and kept',
        neuron.map((l) => l.name),
        [
          { label: 'channels', values: neuron.map((l) => l.gates), fill: 'rgba(154,160,166,0.6)' },
          { label: 'kept', values: neuron.map((l) => l.gatesOpen), fill: 'rgba(15,157,88,0.85)' },
        ],
      );
    }
  }
}
