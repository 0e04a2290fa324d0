// Public API of the data layer: tokenizers, dataset readers, task templates,
// train/eval split and the seeded batch sampler.

export type { TaskKind, TokenSequence, TokenizedExample } from './types.js';
export { loadTokenizer, TokenizerError } from './tokenizer.js';
export type { SpillwayTokenizer, EncodeOptions, DecodeOptions } from './tokenizer.js';
export {
  DatasetError,
  describeValue,
  detectFormat,
  isParquetPath,
  MAX_ROW_BYTES,
  previewDataset,
  readAllRows,
  readDataset,
  rowError,
  rowLocation,
  PARQUET_SLICE,
} from './datasets.js';
export type { DatasetFormat, DatasetPreview, DatasetRow, ReadOptions } from './datasets.js';
export {
  DEFAULT_CLASSIFY_PROMPT,
  loadExamples,
  renderExample,
  RTE_LABEL_WORDS,
  SST2_LABEL_WORDS,
  tokenizeExample,
  tokenizeRows,
  validateTemplate,
} from './templates.js';
export type {
  ClassifyTemplate,
  CompletionTemplate,
  RenderedExample,
  RteTemplate,
  Sst2Template,
  TaskTemplate,
  TemplateKind,
  TextTemplate,
  TokenizeOptions,
} from './templates.js';
export {
  CHAT_FORMATS,
  CHAT_ROLES,
  chatRenderer,
  chatSequences,
  ChatTemplateError,
  DEFAULT_ROLE_NAMES,
  FALLBACK_CHAT_TEMPLATE,
  previewChatRow,
  rowConversation,
  strftime,
  taskHint,
  tokenizeChatSequence,
} from './chat.js';
export type {
  ChatFormat,
  ChatMessage,
  ChatPiece,
  ChatRenderer,
  ChatRendererOptions,
  ChatRole,
  ChatRowPreview,
  ChatSequenceText,
  ChatTemplate,
  ChatValue,
} from './chat.js';
export { splitIndexArrays, splitIndices, splitRows } from './split.js';
export { DatasetIndex, ExampleSet } from './indexed.js';
export type { IndexOptions } from './indexed.js';
export type { SplitIndices, SplitOptions } from './split.js';
export {
  BatchSampler,
  batchIndices,
  epochOfStep,
  hashWords,
  permutation,
  PURPOSE_SAMPLER,
  PURPOSE_SPLIT,
  seedWords,
  SplitMix32,
  Xoshiro128,
} from './sampler.js';
export type { BatchSamplerOptions } from './sampler.js';
export { answerScores, exactMatch, normalizeAnswer, tokenF1 } from './answers.js';
