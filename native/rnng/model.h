// The RNNG parser of nlpkit.tasks.semantic_parse, run with libtorch: a model directory written by
// nlpkit.tasks.semantic_parse.native.write_native_model in, bracketed TOP trees out.
#pragma once

#include <memory>
#include <string>

namespace nlpkit {

class Parser {
 public:
  // Loads MODEL_DIR/model.txt, weights.bin and words.txt; any problem throws std::runtime_error
  // naming the file.
  explicit Parser(const std::string& model_dir);
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // One sentence (raw UTF-8 text, split on whitespace as Python's str.split()) -> its bracketed TOP
  // tree. Throws std::invalid_argument for text that has no parse (blank, not UTF-8).
  std::string parse(const std::string& text) const;
  // featurizer=wordpiece: the text's word pieces ("p,p p | [CLS] .. [SEP] | first pieces"), no encoder
  std::string pieces(const std::string& text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// intra-op threads of every ATen op (at::set_num_threads)
void set_threads(int threads);

}  // namespace nlpkit
