// Validation and normalisation of the domain names a job asks about. Pure functions, no state:
// safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace domain_check {

struct NameCheck {
  bool valid = false;
  std::string name;    // normalised (lowercase, no trailing dot) when valid
  std::string reason;  // why not, when invalid
};

// Checks one name: total length <= 253, 2+ labels of 1..63 letters/digits/hyphens, no hyphen at
// either end of a label, no "--" in positions 3-4 except in a well-formed punycode ("xn--")
// label, a non-numeric top-level label. Non-ASCII input is refused: IDNs must come in their
// ASCII (punycode) form. One trailing dot (the root) is accepted and removed.
NameCheck check_domain_name(std::string_view raw);

// Decodes the part after "xn--" of a punycode label (RFC 3492). Returns false when malformed.
bool punycode_decode(std::string_view input, std::u32string& out);

}  // namespace domain_check
