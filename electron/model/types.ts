// The model seam: what the TypeScript side hands the native engine.
// Everything Hugging-Face-specific (file layout, tensor names, config keys)
// is resolved here; the engine sees normalised configs and tensors by role.

export type Dtype = 'F32' | 'F16' | 'BF16';

/** Family of forward pass the engine runs (native/src/arch/). Mistral and Qwen2 share `llama`. */
export type ArchFamily = 'opt' | 'gpt2' | 'llama' | 'gpt_neox' | 'olmo2' | 'gemma2' | 'gemma3';

export type Activation = 'relu' | 'gelu' | 'gelu_new' | 'silu';

/** rmsnorm_plus1: Gemma's RMSNorm, scaled by (1 + w). */
export type NormKind = 'layernorm' | 'rmsnorm' | 'rmsnorm_plus1';

/** transformers' rope_type values (modeling_rope_utils.py). */
export type RopeType = 'default' | 'linear' | 'dynamic' | 'yarn' | 'longrope' | 'llama3';

/**
 * Rotary position embeddings, normalised from rope_scaling / rope_parameters
 * (electron/model/arch/rope.ts); the engine's frequencies come from it
 * (native/src/arch/rope.cpp). Fields beyond type, theta and rotaryDim belong to
 * the scalings that use them.
 */
export interface RopeSpec {
  type: RopeType;
  theta: number;
  /** Dims rotated per head: head_dim x partial_rotary_factor (even). */
  rotaryDim: number;
  /** linear, dynamic, yarn, llama3 (and longrope, when given). */
  factor?: number;
  /** llama3, yarn, longrope: the pretraining length. */
  originalMaxPositions?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  betaFast?: number;
  betaSlow?: number;
  truncate?: boolean;
  mscale?: number;
  mscaleAllDim?: number;
  /** yarn, longrope: cos/sin scale (derived from the factor when absent). */
  attentionFactor?: number;
  shortFactor?: number[];
  longFactor?: number[];
}

/** How one block attends (native LayerAttention, spillway/model.h). */
export interface LayerAttention {
  /** Sliding-window span: a query sees itself and the window - 1 tokens before it; 0 = full causal. */
  window: number;
  /** Its rotary table: an index into ModelConfig.ropes, -1 for none (SmolLM3's NoPE layers). */
  rope: number;
}

export interface ModelConfig {
  /** Architecture as named in config.json, e.g. "OPTForCausalLM". */
  hfArchitecture: string;
  family: ArchFamily;
  vocabSize: number;
  hidden: number;          // C
  layers: number;          // L
  heads: number;           // NH
  kvHeads: number;         // grouped-query heads (== heads when not grouped)
  headDim: number;         // HD, hidden / heads unless the config says otherwise
  intermediate: number;    // MLP width
  maxPositions: number;
  normEps: number;
  norm: NormKind;
  activation: Activation;
  /** Learned absolute positions (OPT, GPT-2): index = position + positionOffset. */
  positionOffset: number;
  /**
   * Rotary tables as the engine computes them; empty for learned positions. Blocks pick theirs in
   * layerAttention: [0] is the model's rope_parameters; a family whose layers differ (Gemma 3's
   * local base) adds its other table after.
   */
  ropes: RopeSpec[];
  /** One per block, in order: its sliding window and its rotary table. */
  layerAttention: LayerAttention[];
  tiedEmbeddings: boolean;
  /** GPT-NeoX: h + attn(ln1 h) + mlp(ln2 h) instead of one residual after the other. */
  parallelResidual?: boolean;
  /** OPT-350m (do_layer_norm_before false): the block's norms follow their residuals, h = norm(h + f(h)). */
  postNorm?: boolean;
  /** A final norm before the head (default true; OPT-350m and _remove_final_layer_norm have none). */
  finalNorm?: boolean;
  /** E, the embeddings' width when it differs from hidden (OPT's word_embed_proj_dim): project_in/project_out. */
  embedDim?: number;
  /** Gemma: the embeddings' rows times sqrt(hidden). */
  embedScale?: number;
  /** Gemma: scores scaled by queryPreAttnScalar^-1/2 instead of headDim^-1/2. */
  queryPreAttnScalar?: number;
  /** Gemma 2: attention scores soft-capped, cap * tanh(s / cap), before the mask. */
  attnSoftcap?: number;
  /** Gemma 2: logits soft-capped the same way before the log-softmax. */
  finalSoftcap?: number;
  bosTokenId: number | null;
  eosTokenId: number | null;
}

/** One tensor inside a safetensors file, already bounds-checked against it. */
export interface TensorRef {
  /** Name in the checkpoint; also the key of its perturbation noise. */
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Absolute path of the .safetensors file holding it. */
  file: string;
  /** Absolute byte offset of the data inside the file (header included). */
  offset: number;
  nbytes: number;
  /** GPT-2 Conv1D weights are stored [in, out] instead of Linear's [out, in]. */
  transposed: boolean;
}

/**
 * Roles of tensors inside units: each architecture file (electron/model/arch/)
 * names the tensors its units hold by role; the engine binds roles to the fields
 * of its parameter structs (native/src/arch/params.cpp, spillway/model.h).
 * embed: tok [V, E], pos [P, C] (learned positions only), proj [C, E] (OPT's project_in, when E != C)
 * block: <stem>_w and <stem>_b for the stems of native/src/arch/params.cpp (attn_norm, qkv, q,
 *        k, v, o, mlp_norm, fc1, fc2, gate, up, down, ...; which ones, and their shapes, per family)
 * head:  norm_w?, norm_b?, proj? [E, C], lm_head? [V, E] (absent when tied: the engine uses embed.tok)
 */
export type UnitKind = 'embed' | 'block' | 'head';

export interface UnitSpec {
  kind: UnitKind;
  /** Block index for blocks, -1 otherwise. */
  index: number;
  tensors: Record<string, TensorRef>;
}

export interface ModelInfo {
  /** Folder holding config.json (a snapshot folder for the HF cache layout). */
  dir: string;
  /** Display name: folder name, or org/name for the HF cache. */
  name: string;
  config: ModelConfig;
  units: UnitSpec[];
  /** Every tensor of the checkpoint (including ones no unit uses). */
  tensors: TensorRef[];
  /** Checkpoint entries the family knows as buffers, not weights (GPT-2's attention masks). */
  buffers: string[];
  parameterCount: number;
  /** Dtypes found, with their parameter counts. */
  dtypes: Partial<Record<Dtype, number>>;
  sizeOnDisk: number;
  tokenizer: { kind: 'tokenizer.json' | 'vocab+merges'; files: string[] } | null;
}

/** A folder that looks like a model but cannot be trained here, and why. */
export interface UnsupportedModel {
  dir: string;
  name: string;
  hfArchitecture: string | null;
  reason: string;
}
