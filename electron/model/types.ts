// The model seam: what the TypeScript side hands the native engine.
// Everything Hugging-Face-specific (file layout, tensor names, config keys)
// is resolved here; the engine sees normalised configs and tensors by role.

export type Dtype = 'F32' | 'F16' | 'BF16';

/** Family of forward pass the engine runs. Mistral and Qwen2 share `llama`. */
export type ArchFamily = 'opt' | 'gpt2' | 'llama';

export type Activation = 'relu' | 'gelu' | 'gelu_new' | 'silu';

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
  norm: 'layernorm' | 'rmsnorm';
  activation: Activation;
  /** Learned absolute positions (OPT, GPT-2): index = position + positionOffset. */
  positionOffset: number;
  /** RoPE base (llama family); 0 when positions are learned. */
  ropeTheta: number;
  /** Sliding-window attention span (Mistral); 0 = full causal attention. */
  slidingWindow: number;
  tiedEmbeddings: boolean;
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
 * Roles of tensors inside units.
 * embed: tok [V, C], pos [P, C] (learned positions only)
 * block: attn_norm_w, attn_norm_b?, q_w, q_b?, k_w, k_b?, v_w, v_b?  (separate projections)
 *        or qkv_w [C, 3C] (transposed), qkv_b [3C] (GPT-2 fused),
 *        o_w, o_b?, mlp_norm_w, mlp_norm_b?,
 *        fc1_w, fc1_b?, fc2_w, fc2_b?            (OPT, GPT-2)
 *        gate_w, up_w, down_w (+ _b when the config has mlp bias)   (llama family)
 * head:  norm_w, norm_b?, lm_head? (absent when tied: the engine uses embed.tok)
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
