#include "wordpiece.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "text.h"

namespace nlpkit {
namespace {

std::vector<std::pair<char32_t, char32_t>> ranges(const Manifest& m, const std::string& key) {
  std::vector<std::pair<char32_t, char32_t>> out;
  for (const Record& r : m.all(key)) {
    if (r.size() != 2) m.fail("'" + key + "' takes START END");
    long a = to_long(r[0], m.path + ": " + key), b = to_long(r[1], m.path + ": " + key);
    if (a > b || a < 0 || b > 0x10FFFF) m.fail("'" + key + "' range " + r[0] + " " + r[1] + " is not a code point range");
    out.emplace_back(static_cast<char32_t>(a), static_cast<char32_t>(b));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

PieceTables::PieceTables(const Manifest& m, const std::string& model_dir) {
  vocab_ = read_vocabulary(m, "wordpiece_vocab", model_dir, "pieces");

  const Record& ids = m.one("wordpiece_ids");  // CLS SEP UNK PAD
  if (ids.size() != 4) m.fail("'wordpiece_ids' takes CLS SEP UNK PAD");
  long* targets[] = {&cls_, &sep_, &unk_, &pad_};
  for (int k = 0; k < 4; ++k) {
    *targets[k] = to_long(ids[k], m.path + ": wordpiece_ids");
    if (*targets[k] < 0 || *targets[k] >= static_cast<long>(vocab_.size())) m.fail("wordpiece_ids " + ids[k] + " is not a piece id");
  }
  prefix_ = m.text("wordpiece_prefix");
  max_chars_ = m.integer("wordpiece_max_chars");
  max_length_ = m.integer("wordpiece_max_length");
  if (max_length_ < 3) m.fail("wordpiece_max_length must be at least 3 ([CLS], a piece, [SEP])");
  for (const std::string& v : m.one("space")) spaces_.insert(static_cast<char32_t>(to_long(v, m.path + ": space")));
  remove_ = ranges(m, "wordpiece_remove");
  alone_ = ranges(m, "wordpiece_alone");
  for (const Record& r : m.all("wordpiece_map")) {
    if (r.empty()) m.fail("a 'wordpiece_map' line without its code point");
    std::u32string to;
    for (size_t k = 1; k < r.size(); ++k) to.push_back(static_cast<char32_t>(to_long(r[k], m.path + ": wordpiece_map")));
    map_[static_cast<char32_t>(to_long(r[0], m.path + ": wordpiece_map"))] = to;
  }
}

bool PieceTables::in(const std::vector<std::pair<char32_t, char32_t>>& rs, char32_t cp) {
  auto it = std::upper_bound(rs.begin(), rs.end(), std::make_pair(cp, static_cast<char32_t>(0x7FFFFFFF)));
  return it != rs.begin() && cp <= (--it)->second;
}

// HF WordPiece::tokenize of one pre-tokenized word: greedy longest match first, the prefix on every
// piece but the first; a word longer than max_input_chars_per_word, or with a part no piece covers,
// is one [UNK]
void PieceTables::wordpiece(const std::u32string& sub, std::vector<long>& out) const {
  if (static_cast<long>(sub.size()) > max_chars_) {
    out.push_back(unk_);
    return;
  }
  std::vector<long> found;
  size_t start = 0;
  while (start < sub.size()) {
    size_t end = sub.size();
    long match = -1;
    while (start < end) {
      std::string piece = encode_utf8(sub.substr(start, end - start));
      if (start > 0) piece = prefix_ + piece;
      auto hit = vocab_.find(piece);
      if (hit != vocab_.end()) {
        match = hit->second;
        break;
      }
      --end;
    }
    if (match < 0) {
      out.push_back(unk_);
      return;
    }
    found.push_back(match);
    start = end;
  }
  out.insert(out.end(), found.begin(), found.end());
}

// one whitespace word: the table (normalize + space out punctuation / CJK, drop control characters),
// split at spaces (HF's pre-tokenized words), WordPiece each; no piece at all: one [UNK]
std::vector<long> PieceTables::pieces_of(const std::u32string& word) const {
  std::u32string normalized;
  for (char32_t cp : word) {
    if (in(remove_, cp)) continue;
    if (in(alone_, cp)) {
      normalized += U' ';
      normalized += cp;
      normalized += U' ';
      continue;
    }
    auto mapped = map_.find(cp);
    if (mapped == map_.end()) normalized += cp;
    else normalized += mapped->second;
  }
  std::vector<long> out;
  std::u32string sub;
  for (char32_t cp : normalized) {
    if (cp == U' ') {
      if (!sub.empty()) wordpiece(sub, out);
      sub.clear();
    } else {
      sub += cp;
    }
  }
  if (!sub.empty()) wordpiece(sub, out);
  if (out.empty()) out.push_back(unk_);
  return out;
}

PieceFeatures PieceTables::featurize(const std::string& text) const {
  const std::u32string all = decode_utf8(text);
  PieceFeatures f;
  std::u32string word;
  auto flush = [&] {
    if (word.empty()) return;
    f.tokens.push_back(encode_utf8(word));
    f.word_pieces.push_back(pieces_of(word));
    word.clear();
  };
  for (char32_t cp : all) {
    if (spaces_.count(cp)) flush();
    else word.push_back(cp);
  }
  flush();
  if (f.tokens.empty()) throw std::invalid_argument("blank text: no token to parse");
  // WordPieceFeaturizer.encode_words: [CLS], the pieces cut at max_length - 2, [SEP]
  const long limit = max_length_ - 2;
  f.row.push_back(cls_);
  long flat = 0;
  for (const auto& ids : f.word_pieces) {
    const long start = 1 + flat;
    f.starts.push_back(start <= limit ? start : 0);
    f.kept += start <= limit;
    for (long id : ids) {
      if (flat < limit) f.row.push_back(id);
      ++flat;
    }
  }
  f.row.push_back(sep_);
  return f;
}

std::string PieceTables::describe(const PieceFeatures& f) {
  std::string out;
  for (size_t w = 0; w < f.word_pieces.size(); ++w) {
    if (w) out += ' ';
    for (size_t k = 0; k < f.word_pieces[w].size(); ++k) out += (k ? "," : "") + std::to_string(f.word_pieces[w][k]);
  }
  out += " |";
  for (long id : f.row) out += " " + std::to_string(id);
  out += " |";
  for (long s : f.starts) out += " " + std::to_string(s);
  return out;
}

}  // namespace nlpkit
