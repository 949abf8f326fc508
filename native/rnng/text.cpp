#include "text.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace nlpkit {
namespace {

// casing flag bits (model.txt "casing" lines)
constexpr unsigned DIGIT = 1, ALNUM = 2, ALPHA = 4, LOWER = 8, UPPER = 16;
// nlpkit.data.token_features.SHAPES
constexpr long LOWER_ID = 1, UPPER_ID = 2, TITLE_ID = 3, MIXED_ID = 4, NUMERIC_ID = 5, HAS_DIGIT_ID = 6,
               PUNCT_ID = 7, OTHER_ID = 8;
constexpr long CHAR_UNK = 1;  // CharVocab.UNK_ID; <pad> is 0, characters start at 2

}  // namespace

std::u32string decode_utf8(const std::string& text) {
  std::u32string out;
  size_t i = 0;
  auto bad = [] { throw std::invalid_argument("the text is not valid UTF-8"); };
  while (i < text.size()) {
    unsigned char b = text[i];
    char32_t cp;
    int extra;
    if (b < 0x80) { cp = b; extra = 0; }
    else if ((b & 0xE0) == 0xC0) { cp = b & 0x1F; extra = 1; }
    else if ((b & 0xF0) == 0xE0) { cp = b & 0x0F; extra = 2; }
    else if ((b & 0xF8) == 0xF0) { cp = b & 0x07; extra = 3; }
    else bad();
    if (i + extra >= text.size() && extra > 0) bad();  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      unsigned char c = text[i + k];
      if ((c & 0xC0) != 0x80) bad();
      cp = (cp << 6) | (c & 0x3F);
    }
    static const char32_t smallest[] = {0, 0x80, 0x800, 0x10000};
    if (cp < smallest[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) bad();  // overlong, surrogate
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  for (char32_t cp : text) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

TextTables::TextTables(const Manifest& m, const std::string& model_dir)
    : pad_id_(m.integer("pad_id")), unk_id_(m.integer("unk_id")), max_word_length_(m.integer("max_word_length")) {
  words_ = read_vocabulary(m, "words", model_dir, "words");

  long char_id = 2;
  for (const Record& r : m.all("chars"))
    for (const std::string& v : r) chars_.emplace(static_cast<char32_t>(to_long(v, m.path + ": chars")), char_id++);
  for (const std::string& v : m.one("space")) spaces_.insert(static_cast<char32_t>(to_long(v, m.path + ": space")));
  for (const Record& r : m.all("normalize")) {
    if (r.empty()) m.fail("a 'normalize' line without its code point");
    std::u32string to;
    for (size_t k = 1; k < r.size(); ++k) to.push_back(static_cast<char32_t>(to_long(r[k], m.path + ": normalize")));
    normalize_[static_cast<char32_t>(to_long(r[0], m.path + ": normalize"))] = to;
  }
  for (const Record& r : m.all("casing")) {
    if (r.size() != 3) m.fail("'casing' takes START END FLAGS");
    casing_.push_back({to_long(r[0], m.path), to_long(r[1], m.path), to_long(r[2], m.path)});
  }
  if (!std::is_sorted(casing_.begin(), casing_.end())) m.fail("'casing' ranges are not sorted");
}

unsigned TextTables::flags(char32_t cp) const {
  // the last range starting at or before cp
  auto it = std::upper_bound(casing_.begin(), casing_.end(), static_cast<long>(cp),
                             [](long value, const std::vector<long>& range) { return value < range[0]; });
  if (it == casing_.begin()) return 0;
  --it;
  return static_cast<long>(cp) <= (*it)[1] ? static_cast<unsigned>((*it)[2]) : 0;
}

long TextTables::word_id(const std::u32string& token) const {
  std::u32string key;
  for (char32_t cp : token) {
    auto found = normalize_.find(cp);
    if (found == normalize_.end()) key.push_back(cp);
    else key += found->second;
  }
  auto found = words_.find(encode_utf8(key));
  long id = found == words_.end() ? unk_id_ : found->second;
  return id == pad_id_ ? unk_id_ : id;  // a literal "<pad>" in the text is an unknown word
}

long TextTables::shape(const std::u32string& token) const {
  // nlpkit.data.token_features.word_shape, one code point at a time
  bool all_digit = !token.empty(), any_digit = false, any_alnum = false;
  std::vector<unsigned> letters;
  for (char32_t cp : token) {
    unsigned f = flags(cp);
    all_digit = all_digit && (f & DIGIT);
    any_digit = any_digit || (f & DIGIT);
    any_alnum = any_alnum || (f & ALNUM);
    if (f & ALPHA) letters.push_back(f);
  }
  if (all_digit) return NUMERIC_ID;
  if (any_digit) return HAS_DIGIT_ID;
  if (!any_alnum) return PUNCT_ID;
  if (letters.empty()) return OTHER_ID;
  auto all = [&](size_t from, unsigned bit) {
    return std::all_of(letters.begin() + from, letters.end(), [bit](unsigned f) { return (f & bit) != 0; });
  };
  if (all(0, LOWER)) return LOWER_ID;
  if (all(0, UPPER)) return UPPER_ID;
  if ((letters[0] & UPPER) && all(1, LOWER)) return TITLE_ID;
  return MIXED_ID;
}

Features TextTables::featurize(const std::string& text) const {
  const std::u32string all = decode_utf8(text);
  Features out;
  std::u32string token;
  auto flush = [&] {
    if (token.empty()) return;
    out.tokens.push_back(encode_utf8(token));
    out.words.push_back(word_id(token));
    std::vector<long> ids;
    for (size_t k = 0; k < token.size() && static_cast<long>(k) < max_word_length_; ++k) {
      auto found = chars_.find(token[k]);
      ids.push_back(found == chars_.end() ? CHAR_UNK : found->second);
    }
    out.chars.push_back(ids);
    out.shapes.push_back(shape(token));
    token.clear();
  };
  for (char32_t cp : all) {
    if (spaces_.count(cp)) flush();
    else token.push_back(cp);
  }
  flush();
  if (out.tokens.empty()) throw std::invalid_argument("blank text: no token to parse");
  return out;
}

}  // namespace nlpkit
