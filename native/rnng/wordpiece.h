// The text side of a featurizer=wordpiece parser: whitespace words, each WordPiece'd on its own exactly
// as nlpkit's WordPieceFeaturizer does through HF tokenizers (BertNormalizer -> BertPreTokenizer ->
// greedy longest-match-first WordPiece, [UNK] for a word it cannot cover or one without any piece),
// then [CLS] pieces [SEP], cut at max_length - 2 pieces, and each word's first piece. HF's
// normalization and pre-tokenization are one per-code-point table the exporting Python read off HF
// itself (model.txt's wordpiece_remove / wordpiece_alone / wordpiece_map lines): no Unicode database.
#pragma once

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "manifest.h"

namespace nlpkit {

struct PieceFeatures {
  std::vector<std::string> tokens;             // UTF-8 words, as str.split() gives them
  std::vector<std::vector<long>> word_pieces;  // HF's piece ids of each word (one [UNK] for none)
  std::vector<long> row;                       // the encoder's input: [CLS] pieces (cut) [SEP]
  std::vector<long> starts;                    // each word's first-piece index into row (0: cut off)
  long kept = 0;                               // the words whose first piece is in row
};

class PieceTables {
 public:
  PieceTables(const Manifest& manifest, const std::string& model_dir);
  // throws std::invalid_argument for text that is not UTF-8 or has no word
  PieceFeatures featurize(const std::string& text) const;
  // the --pieces answer: "p,p p | row | starts" (nlpkit.tasks.semantic_parse.native.piece_lines)
  static std::string describe(const PieceFeatures& features);
  long max_length() const { return max_length_; }

 private:
  std::vector<long> pieces_of(const std::u32string& word) const;
  void wordpiece(const std::u32string& sub, std::vector<long>& out) const;
  static bool in(const std::vector<std::pair<char32_t, char32_t>>& ranges, char32_t cp);

  long cls_ = 0, sep_ = 0, unk_ = 0, pad_ = 0, max_chars_ = 0, max_length_ = 0;
  std::string prefix_;
  std::unordered_map<std::string, long> vocab_;  // UTF-8 piece -> id
  std::unordered_set<char32_t> spaces_;           // str.isspace
  std::vector<std::pair<char32_t, char32_t>> remove_, alone_;  // sorted code point ranges
  std::unordered_map<char32_t, std::u32string> map_;
};

}  // namespace nlpkit
