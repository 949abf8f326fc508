// The text side of the parser: whitespace tokens, word ids, character ids and casing classes exactly
// as nlpkit's WordFeaturizer computes them. The Unicode facts Python uses (str.isspace, the
// tokenizer's lowercasing, str.isdigit/isalnum/isalpha/islower/isupper) come from the model
// directory, written by the exporting Python, so both sides agree code point for code point.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "manifest.h"

namespace nlpkit {

struct Features {
  std::vector<std::string> tokens;       // UTF-8, as str.split() gives them
  std::vector<long> words;               // word id per token
  std::vector<std::vector<long>> chars;  // character ids per token (truncated, never empty)
  std::vector<long> shapes;              // casing class per token
};

class TextTables {
 public:
  TextTables(const Manifest& manifest, const std::string& model_dir);
  // throws std::invalid_argument for text that is not UTF-8 or has no token
  Features featurize(const std::string& text) const;

 private:
  long word_id(const std::u32string& token) const;
  long shape(const std::u32string& token) const;
  unsigned flags(char32_t cp) const;

  long pad_id_, unk_id_, max_word_length_;
  std::unordered_map<std::string, long> words_;  // normalized UTF-8 key -> id
  std::unordered_map<char32_t, long> chars_;
  std::unordered_set<char32_t> spaces_;
  std::unordered_map<char32_t, std::u32string> normalize_;
  std::vector<std::vector<long>> casing_;  // [start, end, flags] ranges, sorted
};

std::u32string decode_utf8(const std::string& text);  // throws std::invalid_argument
std::string encode_utf8(const std::u32string& text);

}  // namespace nlpkit
