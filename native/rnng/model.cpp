// The RNNG decoder with ATen ops, batch size 1: the same kernels as RNNGParser.decode
// (nlpkit/tasks/semantic_parse/model.py), step for step, so the trees are the Python parser's.
// Only per-operator ATen headers are included: the full torch/torch.h takes minutes to compile.
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/conv1d.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/lstm.h>
#include <ATen/ops/lstm_cell.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "manifest.h"
#include "model.h"
#include "text.h"
#include "wordpiece.h"

namespace nlpkit {
namespace {

constexpr long SHIFT = 0, REDUCE = 1, FIRST_NT = 2;
constexpr float MASKED = -1e9f;  // model.MASKED

at::Tensor long_tensor(const std::vector<long>& values) {
  std::vector<int64_t> copy(values.begin(), values.end());
  return at::from_blob(copy.data(), {static_cast<int64_t>(copy.size())}, at::kLong).clone();
}

struct Lstm {  // one direction of one nn.LSTM layer
  std::vector<at::Tensor> params;  // w_ih, w_hh, b_ih, b_hh
  int64_t hidden = 0;
  // x [1, T, D] -> states [1, T, H] (nn.LSTM(batch_first=True) with a zero initial state)
  at::Tensor run(const at::Tensor& x) const {
    at::Tensor zeros = at::zeros({1, 1, hidden}, x.options());
    return std::get<0>(at::lstm(x, {zeros, zeros}, params, true, 1, 0.0, false, false, true));
  }
};

struct BiLstm {  // nlpkit.modules.representation.bilstm.BiLSTM
  std::vector<Lstm> forward, backward;
  // x [1, T, D] -> [1, T, 2H]; one sequence, so reverse_padded is a flip
  at::Tensor run(at::Tensor x) const {
    for (size_t l = 0; l < forward.size(); ++l) {
      at::Tensor f = forward[l].run(x);
      at::Tensor b = backward[l].run(x.flip({1})).flip({1});
      x = at::cat({f, b}, -1);
    }
    return x;
  }
};

struct Linear {
  at::Tensor weight, bias;
  at::Tensor operator()(const at::Tensor& x) const { return at::linear(x, weight, bias); }
};

struct Cell {  // nn.LSTMCell
  at::Tensor w_ih, w_hh, b_ih, b_hh;
  std::tuple<at::Tensor, at::Tensor> operator()(const at::Tensor& x, const at::Tensor& h, const at::Tensor& c) const {
    return at::lstm_cell(x, {h, c}, w_ih, w_hh, b_ih, b_hh);
  }
};

struct LayerNorm {
  at::Tensor weight, bias;
  double eps = 1e-12;
  at::Tensor operator()(const at::Tensor& x) const { return at::layer_norm(x, {weight.size(0)}, weight, bias, eps); }
};

struct BertLayer {  // HF BertLayer in eval mode
  Linear query, key, value, attention_out, intermediate, out;
  LayerNorm attention_norm, out_norm;
};

// HF BertModel's last hidden state, eval mode (dropout off), one sequence without padding: embeddings
// (word + token type 0, + absolute positions, LayerNorm), then per layer scaled-dot-product
// self-attention, dense + residual + LayerNorm, exact (erf) GELU feed-forward, dense + residual +
// LayerNorm: the ops, and their order, of modeling_bert.py with attn_implementation=sdpa
struct Bert {
  at::Tensor word, position, token_type;
  LayerNorm embedding_norm;
  std::vector<BertLayer> layers;
  int64_t heads = 1, hidden = 0;
  // ids [T] -> [T, hidden]
  at::Tensor run(const std::vector<long>& ids) const {
    const int64_t steps = ids.size(), head_dim = hidden / heads;
    at::Tensor x = at::embedding(word, long_tensor(ids).unsqueeze(0));  // [1, T, H]
    x = x + token_type.narrow(0, 0, 1);
    x = x + position.narrow(0, 0, steps);
    x = embedding_norm(x);
    const double scale = std::pow(static_cast<double>(head_dim), -0.5);
    for (const BertLayer& layer : layers) {
      auto heads_of = [&](const at::Tensor& t) { return t.view({1, steps, heads, head_dim}).transpose(1, 2); };
      at::Tensor attended = at::scaled_dot_product_attention(heads_of(layer.query(x)), heads_of(layer.key(x)),
                                                             heads_of(layer.value(x)), {}, 0.0, false, scale);
      attended = attended.transpose(1, 2).contiguous().reshape({1, steps, hidden}).contiguous();
      at::Tensor h = layer.attention_norm(layer.attention_out(attended) + x);
      x = layer.out_norm(layer.out(at::gelu(layer.intermediate(h))) + h);
    }
    return x.squeeze(0);
  }
};

struct Embedder {
  std::string kind;  // word, char or shape
  at::Tensor weight;
  std::vector<int64_t> kernels;  // char only
  std::vector<Linear> convs, transforms, gates;
  bool has_projection = false, tanh_activation = true;
  Linear projection;
};

}  // namespace

struct Parser::Impl {
  Manifest manifest;
  std::unique_ptr<TextTables> text;     // featurizer=word
  std::unique_ptr<PieceTables> pieces;  // featurizer=wordpiece
  Bert bert;
  std::vector<Embedder> embedders;
  BiLstm encoder;
  Linear token_to_stack, project, scorer1, scorer2;
  at::Tensor nt_embedding, action_embedding, empty_stack;
  Cell stack_cell, history_cell;
  std::string compose;
  BiLstm compose_lstm;
  std::vector<std::string> actions;
  std::vector<bool> nt_is_intent;
  long max_open = 0, stack_dim = 0;
  std::map<std::string, at::Tensor> tensors;

  Impl(const std::string& dir) : manifest(Manifest::read(dir + "/model.txt")) {
    const std::string featurizer = manifest.format == 1 ? "word" : manifest.text("featurizer");
    if (featurizer == "word") text.reset(new TextTables(manifest, dir));
    else if (featurizer == "wordpiece") pieces.reset(new PieceTables(manifest, dir));
    else manifest.fail("featurizer must be word or wordpiece, not " + featurizer);
    load_tensors(dir);
    max_open = manifest.integer("max_open");
    compose = manifest.text("compose");
    for (const Record& r : manifest.all("action")) {
      if (r.size() != 1) manifest.fail("'action' takes one name");
      actions.push_back(r[0]);
    }
    if (actions.size() < 3 || actions[0] != "SHIFT" || actions[1] != "REDUCE")
      manifest.fail("the actions must be SHIFT, REDUCE and at least one non-terminal");
    for (size_t a = FIRST_NT; a < actions.size(); ++a) nt_is_intent.push_back(actions[a].rfind("IN:", 0) == 0);

    if (text) {
      for (const Record& r : manifest.all("embedding")) load_embedder(r);
      if (embedders.empty()) manifest.fail("no 'embedding' line");
      long layers = manifest.integer("encoder_layers");
      encoder = bilstm("representation.encoder", layers);
    } else {
      load_bert();
    }
    token_to_stack = linear("token_to_stack");
    nt_embedding = get("nt_embedding.weight");
    action_embedding = get("action_embedding.weight");
    empty_stack = get("empty_stack").unsqueeze(0);  // [1, S]
    stack_dim = empty_stack.size(1);
    stack_cell = cell("stack_cell");
    history_cell = cell("history_cell");
    scorer1 = linear("scorer.1");
    scorer2 = linear("scorer.4");
    if (compose == "bilstm") compose_lstm = bilstm("compose.lstm", 1);
    else if (compose != "sum") manifest.fail("compose must be bilstm or sum, not " + compose);
    project = linear("compose.project");
    if (scorer2.weight.size(0) != static_cast<int64_t>(actions.size()))
      manifest.fail("scorer.4.weight scores " + std::to_string(scorer2.weight.size(0)) + " actions, the manifest names " +
                    std::to_string(actions.size()));
    if (nt_embedding.size(0) != static_cast<int64_t>(actions.size()) - FIRST_NT)
      manifest.fail("nt_embedding.weight does not match the actions");
  }

  void load_tensors(const std::string& dir) {
    const Record& blob = manifest.one("blob");  // FILE FLOATS CRC32
    if (blob.size() != 3) manifest.fail("'blob' takes FILE FLOATS CRC32");
    const std::string path = dir + "/" + blob[0];
    const std::string data = read_binary(path);
    const long floats = to_long(blob[1], manifest.path + ": blob");
    if (static_cast<long>(data.size()) != floats * 4)
      throw std::runtime_error(path + ": " + std::to_string(data.size()) + " bytes, the manifest says " +
                               std::to_string(floats * 4) + " (truncated or not this model's weights)");
    if (std::to_string(crc32(data)) != blob[2])
      throw std::runtime_error(path + ": checksum mismatch (the file is damaged or not this model's)");
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "weights.bin is little-endian float32");
    for (const Record& r : manifest.all("tensor")) {  // NAME OFFSET DIM...
      if (r.size() < 2) manifest.fail("'tensor' takes NAME OFFSET DIM...");
      std::vector<int64_t> dims;
      long count = 1;
      for (size_t k = 2; k < r.size(); ++k) {
        dims.push_back(to_long(r[k], manifest.path + ": tensor " + r[0]));
        count *= dims.back();
      }
      long offset = to_long(r[1], manifest.path + ": tensor " + r[0]);
      if (offset < 0 || offset + count > floats) manifest.fail("tensor " + r[0] + " lies outside " + blob[0]);
      void* start = const_cast<char*>(data.data()) + offset * 4;
      tensors[r[0]] = at::from_blob(start, dims, at::kFloat).clone();
    }
  }

  at::Tensor get(const std::string& name) const {
    auto found = tensors.find(name);
    if (found == tensors.end()) manifest.fail("no tensor " + name);
    return found->second;
  }
  bool has(const std::string& name) const { return tensors.count(name) > 0; }
  Linear linear(const std::string& prefix) const { return {get(prefix + ".weight"), get(prefix + ".bias")}; }
  Cell cell(const std::string& p) const {
    return {get(p + ".weight_ih"), get(p + ".weight_hh"), get(p + ".bias_ih"), get(p + ".bias_hh")};
  }
  Lstm lstm(const std::string& p) const {
    Lstm out;
    for (const char* n : {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}) out.params.push_back(get(p + "." + n));
    out.hidden = out.params[1].size(1);
    return out;
  }
  BiLstm bilstm(const std::string& p, long layers) const {
    BiLstm out;
    for (long l = 0; l < layers; ++l) {
      out.forward.push_back(lstm(p + ".forward_layers." + std::to_string(l)));
      out.backward.push_back(lstm(p + ".backward_layers." + std::to_string(l)));
    }
    return out;
  }

  void load_bert() {
    const Record& kind = manifest.one("transformer");  // KIND PREFIX
    if (kind.size() != 2 || kind[0] != "bert") manifest.fail("'transformer' takes bert PREFIX");
    if (manifest.text("transformer_activation") != "gelu")
      manifest.fail("transformer_activation must be gelu (the exact erf GELU of HF's 'gelu')");
    const std::string p = kind[1];
    bert.heads = manifest.integer("transformer_heads");
    bert.hidden = manifest.integer("transformer_hidden");
    const long intermediate = manifest.integer("transformer_intermediate");
    const long positions = manifest.integer("transformer_positions");
    double eps = 0;
    try {
      eps = std::stod(manifest.text("transformer_eps"));
    } catch (const std::exception&) {
      manifest.fail("transformer_eps is not a number");
    }
    if (bert.heads < 1 || bert.hidden % bert.heads) manifest.fail("transformer_hidden is not a multiple of transformer_heads");
    if (pieces->max_length() > positions)
      manifest.fail("wordpiece_max_length exceeds the encoder's transformer_positions");
    const std::string e = p + ".embeddings.";
    bert.word = get(e + "word_embeddings.weight");
    bert.position = get(e + "position_embeddings.weight");
    bert.token_type = get(e + "token_type_embeddings.weight");
    bert.embedding_norm = {get(e + "LayerNorm.weight"), get(e + "LayerNorm.bias"), eps};
    if (bert.word.size(1) != bert.hidden || bert.position.size(0) != positions)
      manifest.fail(e + "*: the embeddings do not match transformer_hidden / transformer_positions");
    for (long l = 0; l < manifest.integer("transformer_layers"); ++l) {
      const std::string q = p + ".encoder.layer." + std::to_string(l) + ".";
      BertLayer layer;
      layer.query = linear(q + "attention.self.query");
      layer.key = linear(q + "attention.self.key");
      layer.value = linear(q + "attention.self.value");
      layer.attention_out = linear(q + "attention.output.dense");
      layer.attention_norm = {get(q + "attention.output.LayerNorm.weight"), get(q + "attention.output.LayerNorm.bias"), eps};
      layer.intermediate = linear(q + "intermediate.dense");
      layer.out = linear(q + "output.dense");
      layer.out_norm = {get(q + "output.LayerNorm.weight"), get(q + "output.LayerNorm.bias"), eps};
      if (layer.intermediate.weight.size(0) != intermediate || layer.query.weight.size(0) != bert.hidden)
        manifest.fail(q + "*: the layer does not match transformer_hidden / transformer_intermediate");
      bert.layers.push_back(layer);
    }
    if (bert.layers.empty()) manifest.fail("transformer_layers must be at least 1");
  }

  // the --pieces answer for one line (featurizer=wordpiece only)
  std::string piece_line(const std::string& sentence) const {
    if (!pieces) throw std::invalid_argument("this model folder reads featurizer=word: it has no word pieces");
    return PieceTables::describe(pieces->featurize(sentence));
  }

  void load_embedder(const Record& r) {  // KIND PREFIX
    if (r.size() != 2) manifest.fail("'embedding' takes KIND PREFIX");
    Embedder e;
    e.kind = r[0];
    const std::string& p = r[1];
    e.weight = get(p + ".embedding.weight");
    if (e.kind == "char") {
      for (const std::string& k : manifest.one("char_kernels")) e.kernels.push_back(to_long(k, manifest.path));
      for (size_t i = 0; i < e.kernels.size(); ++i) e.convs.push_back(linear(p + ".convs." + std::to_string(i)));
      for (long i = 0; i < manifest.integer("highway_layers"); ++i) {
        e.transforms.push_back(linear(p + ".highway.transforms." + std::to_string(i)));
        e.gates.push_back(linear(p + ".highway.gates." + std::to_string(i)));
      }
      e.has_projection = has(p + ".projection.weight");
      if (e.has_projection) e.projection = linear(p + ".projection");
      std::string activation = manifest.text("char_activation");
      if (activation != "tanh" && activation != "relu") manifest.fail("char_activation must be tanh or relu");
      e.tanh_activation = activation == "tanh";
    } else if (e.kind != "word" && e.kind != "shape") {
      manifest.fail("unknown embedding kind " + e.kind);
    }
    embedders.push_back(e);
  }

  // CharCNNEmbedding.forward for one sentence: chars [T, C] (0-padded) -> [1, T, F]
  at::Tensor char_cnn(const Embedder& e, const Features& f) const {
    int64_t steps = f.chars.size(), width = 1;
    for (const auto& ids : f.chars) width = std::max<int64_t>(width, ids.size());
    std::vector<long> flat(steps * width, 0);
    for (int64_t t = 0; t < steps; ++t)
      for (size_t k = 0; k < f.chars[t].size(); ++k) flat[t * width + k] = f.chars[t][k];
    at::Tensor x = at::embedding(e.weight, long_tensor(flat).view({steps, width}), 0).transpose(1, 2);  // [N, E, C]
    std::vector<at::Tensor> pooled;
    for (size_t i = 0; i < e.kernels.size(); ++i) {
      int64_t k = e.kernels[i];
      at::Tensor conv = at::conv1d(x, e.convs[i].weight, e.convs[i].bias, {1}, {k - 1});
      at::Tensor features = e.tanh_activation ? at::tanh(conv) : at::relu(conv);  // [N, F, C + k - 1]
      std::vector<uint8_t> invalid(steps * (width + k - 1), 0);
      for (int64_t t = 0; t < steps; ++t)
        for (int64_t j = f.chars[t].size() + k - 1; j < width + k - 1; ++j) invalid[t * (width + k - 1) + j] = 1;
      at::Tensor mask = at::from_blob(invalid.data(), {steps, 1, width + k - 1}, at::kBool).clone();
      pooled.push_back(std::get<0>(features.masked_fill(mask, -1e4).max(-1)));  // [N, F]
    }
    at::Tensor words = at::cat(pooled, -1);
    for (size_t i = 0; i < e.transforms.size(); ++i) {
      at::Tensor t = at::sigmoid(e.gates[i](words));
      words = t * at::relu(e.transforms[i](words)) + at::rsub(t, 1.0) * words;
    }
    if (e.has_projection) words = e.projection(words);
    return words.unsqueeze(0);
  }

  at::Tensor embed(const Features& f) const {
    std::vector<at::Tensor> parts;
    for (const Embedder& e : embedders) {
      if (e.kind == "char") parts.push_back(char_cnn(e, f));
      else parts.push_back(at::embedding(e.weight, long_tensor(e.kind == "word" ? f.words : f.shapes).unsqueeze(0)));
    }
    return at::cat(parts, -1);  // [1, T, E]
  }

  // BiLSTMComposition / SumComposition of [NT, children]: nt [1, H], children [1, K, H] -> [1, H]
  at::Tensor composition(const at::Tensor& nt, const at::Tensor& children) const {
    if (compose == "sum") return at::tanh(project(at::cat({nt, children.sum(1)}, -1)));
    at::Tensor states = compose_lstm.run(at::cat({nt.unsqueeze(1), children}, 1));  // [1, K + 1, 2H]
    int64_t h = stack_dim;
    at::Tensor forward_final = states.select(1, states.size(1) - 1).narrow(-1, 0, h);
    at::Tensor backward_final = states.select(1, 0).narrow(-1, h, h);
    return at::tanh(project(at::cat({forward_final, backward_final}, -1)));
  }

  std::string parse(const std::string& sentence) const {
    c10::InferenceMode guard;
    if (text) {
      const Features f = text->featurize(sentence);
      return decode(encoder.run(embed(f)).squeeze(0), f.tokens);  // [T, R]
    }
    const PieceFeatures f = pieces->featurize(sentence);
    const long words = f.tokens.size();
    if (f.kept < words)  // SemanticParsePredictor.predict's refusal, word for word
      throw std::invalid_argument("its " + std::to_string(words) +
                                  " tokens need more word pieces than the featurizer's max_length (the parser would see " +
                                  std::to_string(f.kept) + "); shorten the text");
    // each word's first-piece state (TokenEncoderModel.encode; representation=passthrough)
    return decode(bert.run(f.row).index_select(0, long_tensor(f.starts)), f.tokens);  // [W, H]
  }

  // the transition loop over per-word states [T, R] (RNNGParser.decode, greedy, batch size 1)
  std::string decode(const at::Tensor& states, const std::vector<std::string>& tokens) const {
    const long length = tokens.size();

    // the stack: position 0 is the empty sentinel (zero LSTM state); entries above top are dead
    std::vector<at::Tensor> h{at::zeros({1, stack_dim})}, c{at::zeros({1, stack_dim})}, x{at::zeros({1, stack_dim})};
    std::vector<bool> open{false};
    std::vector<long> label{0};
    long top = 0, ptr = 0, n_open = 0;
    auto start = at::embedding(action_embedding, long_tensor({static_cast<long>(actions.size())}));
    auto zeros = at::zeros({1, action_embedding.size(1)});
    auto history = history_cell(start, zeros, zeros);
    std::vector<std::string> out;
    const long max_steps = length * (2 * max_open + 1) + 2;
    for (long step = 0; step < max_steps; ++step) {
      long open_pos = 0;
      for (long p = top; p > 0; --p)
        if (open[p]) { open_pos = p; break; }
      // valid_actions (model.py), for one example
      const bool started = top > 0, has_open = n_open > 0, buffer_left = ptr < length, has_child = top > open_pos;
      const bool top_is_intent = nt_is_intent[std::max<long>(label[open_pos] - FIRST_NT, 0)];
      const bool can_open = started && has_open && buffer_left && n_open < max_open;
      const bool shift = started && has_open && buffer_left;
      const bool reduce = has_open && has_child && (n_open > 1 || !buffer_left);
      const bool open_intent = (!started && buffer_left) || (can_open && !top_is_intent);
      const bool open_slot = can_open && top_is_intent;

      // _scores: [buffer; stack; history] -> the MLP, masked
      at::Tensor buffer = states.narrow(0, std::min(ptr, length - 1), 1) * (buffer_left ? 1.0 : 0.0);
      at::Tensor stack = top > 0 ? h[top] : empty_stack;
      at::Tensor scores = scorer2(at::relu(scorer1(at::cat({buffer, stack, std::get<0>(history)}, -1)))).contiguous();
      const float* s = scores.data_ptr<float>();
      long action = -1;
      float best = 0;
      for (long a = 0; a < static_cast<long>(actions.size()); ++a) {
        bool valid = a == SHIFT ? shift : a == REDUCE ? reduce : nt_is_intent[a - FIRST_NT] ? open_intent : open_slot;
        float score = valid ? s[a] : MASKED;
        if (action < 0 || score > best) { action = a; best = score; }  // argmax: the first maximum
      }

      // _take: one push (a REDUCE pushes the composition where its non-terminal was)
      at::Tensor input;
      long pos = top + 1;
      if (action == SHIFT) {
        input = token_to_stack(states.narrow(0, std::min(ptr, length - 1), 1));
        out.push_back(tokens[ptr]);
      } else if (action == REDUCE) {
        std::vector<at::Tensor> kids(x.begin() + open_pos + 1, x.begin() + top + 1);
        input = composition(x[open_pos], at::cat(kids, 0).unsqueeze(0));
        pos = open_pos;
        out.push_back("]");
      } else {
        input = at::embedding(nt_embedding, long_tensor({action - FIRST_NT}));
        out.push_back("[" + actions[action]);
      }
      auto next = stack_cell(input, h[pos - 1 < 0 ? 0 : pos - 1], c[pos - 1 < 0 ? 0 : pos - 1]);
      h.resize(pos + 1);
      c.resize(pos + 1);
      x.resize(pos + 1);
      open.resize(pos + 1);
      label.resize(pos + 1);
      h[pos] = std::get<0>(next);
      c[pos] = std::get<1>(next);
      x[pos] = input;
      open[pos] = action >= FIRST_NT;
      label[pos] = action;
      top = pos;
      ptr += action == SHIFT;
      n_open += (action >= FIRST_NT) - (action == REDUCE);
      history = history_cell(at::embedding(action_embedding, long_tensor({action})), std::get<0>(history),
                             std::get<1>(history));
      if (top > 0 && n_open == 0) {  // the root closed
        std::string tree;
        for (size_t k = 0; k < out.size(); ++k) tree += (k ? " " : "") + out[k];
        return tree;
      }
    }
    throw std::runtime_error("the decoder did not close the root within " + std::to_string(max_steps) + " steps");
  }
};

Parser::Parser(const std::string& model_dir) : impl_(new Impl(model_dir)) {}
Parser::~Parser() = default;
std::string Parser::parse(const std::string& text) const { return impl_->parse(text); }
std::string Parser::pieces(const std::string& text) const { return impl_->piece_line(text); }

}  // namespace nlpkit

namespace nlpkit {
void set_threads(int threads) { at::set_num_threads(threads); }
}  // namespace nlpkit
