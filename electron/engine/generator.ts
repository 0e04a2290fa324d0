// A model loaded for generation: the engine (resident, or its blocks streamed
// from CPU memory or the SSD), its tokenizer, chat template and decoding
// defaults, serving one request at a time. Runs inside an engine host process
// (host.ts, generator-client.ts); `spillway generate`, `spillway chat` and the
// Playground talk to it through that process.
import { chatRenderer, loadTokenizer } from '../data/index.js';
import type { ChatRenderer, SpillwayTokenizer } from '../data/index.js';
import { GeneratorOptions, SamplingOptions } from '../common/options.js';
import type { JsonValue, SamplingOptionsInput } from '../common/options.js';
import { loadModelInfo } from '../model/index.js';
import type { ModelInfo } from '../model/index.js';
import { generateTokens, generationDefaults, promptIds, resolveSampling, templateStops } from './generate.js';
import type { GenerationDefaults, GenerationResult, PromptInput, SamplingSettings } from './generate.js';
import { engineThreads, loadNative } from './native.js';
import type { NativeEngine } from './native.js';
import { engineSpec } from './spec.js';
import { placementFor } from './trainer.js';

export { GeneratorOptions };

export interface GenerationRequest {
  prompts: PromptInput[];
  sampling: SamplingOptionsInput;
  /** Chat template variables for this request, over those the generator was loaded with. */
  templateVariables?: Record<string, JsonValue>;
}

export interface GeneratorReady {
  type: 'ready';
  model: string;
  dir: string;
  architecture: string;
  parameters: number;
  backend: string;
  threads: number;
  /** How conversations are rendered: the model's own template or the plain fallback. */
  template: 'model' | 'fallback';
  templateFile: string | null;
  defaults: GenerationDefaults;
}

/** A sequence's newly final text. */
export interface GeneratorText {
  type: 'text';
  id: string;
  seq: number;
  text: string;
  /** Tokens the sequence has generated so far. */
  tokens: number;
}

export interface GeneratorDone {
  type: 'generated';
  id: string;
  result: GenerationResult;
  sampling: SamplingSettings;
}

export interface GeneratorFailed {
  type: 'failed';
  id: string;
  message: string;
}

export type GeneratorEvent = GeneratorReady | GeneratorText | GeneratorDone | GeneratorFailed | { type: 'log'; message: string };

export class Generator {
  private stopping = false;
  private current: string | null = null;

  private constructor(
    readonly info: ModelInfo,
    readonly engine: NativeEngine,
    readonly tokenizer: SpillwayTokenizer,
    readonly renderer: ChatRenderer,
    readonly defaults: GenerationDefaults,
    private readonly options: GeneratorOptions,
  ) {}

  static async load(options: GeneratorOptions): Promise<Generator> {
    const o = GeneratorOptions.parse(options);
    const info = await loadModelInfo(o.model);
    if (!info.tokenizer) throw new Error(`${info.dir} has no tokenizer (tokenizer.json, or vocab.json + merges.txt): it cannot turn text into tokens`);
    const tokenizer = await loadTokenizer(info.dir);
    const renderer = chatRenderer(tokenizer, { templateName: o.templateName, templateVariables: o.templateVariables });
    const defaults = await generationDefaults(info.dir, tokenizer);
    const engine = new (loadNative().Engine)({ threads: engineThreads(o.threads) });
    try {
      await engine.load(engineSpec(info), placementFor({ ...o, offload: o.offload ?? 'none' }, info.units));
    } catch (e) {
      engine.close();
      throw e;
    }
    return new Generator(info, engine, tokenizer, renderer, defaults, o);
  }

  ready(): GeneratorReady {
    const e = this.engine.info();
    return {
      type: 'ready',
      model: this.info.name,
      dir: this.info.dir,
      architecture: this.info.config.hfArchitecture,
      parameters: this.info.parameterCount,
      backend: e.backend ?? 'cpu',
      threads: e.threads ?? 1,
      template: this.renderer.source,
      templateFile: this.renderer.file,
      defaults: this.defaults,
    };
  }

  /** Decodes the request's prompts together, streaming their text through emit. */
  async generate(id: string, request: GenerationRequest, emit: (e: GeneratorEvent) => void): Promise<GenerationResult> {
    const renderer = request.templateVariables
      ? chatRenderer(this.tokenizer, { templateName: this.options.templateName, templateVariables: { ...this.options.templateVariables, ...request.templateVariables } })
      : this.renderer;
    const chat = request.prompts.some((p) => 'messages' in p);
    const sampling = resolveSampling(SamplingOptions.parse(request.sampling), this.defaults, chat ? templateStops(renderer) : []);
    const prompts = request.prompts.map((p) => promptIds(this.tokenizer, renderer, p));
    const limit = this.info.config.maxPositions;
    prompts.forEach((p, i) => {
      if (p.length === 0) throw new Error(`prompt ${i + 1} is empty`);
      if (p.length >= limit) throw new Error(`prompt ${i + 1} has ${p.length} tokens; ${this.info.name} reads at most ${limit}, and a reply needs room`);
    });
    this.stopping = false;
    this.current = id;
    try {
      const result = await generateTokens(this.engine, this.tokenizer, prompts, sampling, this.defaults.eos, {
        onText: (seq, text, tokens) => emit({ type: 'text', id, seq, text, tokens }),
        stopRequested: () => this.stopping,
      });
      emit({ type: 'generated', id, result, sampling });
      return result;
    } finally {
      this.current = null;
    }
  }

  /** Ends the generation `id` now, keeping its text so far; false when it is not the one running. */
  stop(id: string): boolean {
    if (this.current !== id) return false;
    this.stopping = true;
    this.engine.cancel();
    return true;
  }

  /** Ends whatever generation is running. */
  stopCurrent(): void {
    if (this.current !== null) this.stop(this.current);
  }

  close(): void {
    this.engine.close();
  }
}
