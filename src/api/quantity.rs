//! Exact Kubernetes quantities: budgets add them up and drift compares them, ignoring the
//! apiserver's canonical forms.
//!
//! The apiserver stores quantities in canonical form: a committed `0.5` reads back as
//! `500m`, `1024Mi` as `1Gi`, and `2` (a YAML integer) as `"2"`. Comparing the strings
//! would report drift on every pass. Parsing both sides into an exact decimal
//! (digits × 10^exponent, no floats) and comparing values does not.
//!
//! Grammar (from `k8s.io/apimachinery/pkg/api/resource`):
//! ```text
//! quantity        ::= signedNumber suffix
//! signedNumber    ::= number | sign number
//! number          ::= digits | digits "." digits | digits "." | "." digits
//! sign            ::= "+" | "-"
//! suffix          ::= binarySI | decimalExponent | decimalSI
//! binarySI        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! decimalSI       ::= n | u | m | "" | k | M | G | T | P | E
//! decimalExponent ::= "e" signedNumber | "E" signedNumber   (an integer)
//! ```

/// An exact quantity: `digits × 10^exponent`, normalised so that equal values have
/// equal representations (no leading or trailing zero digits; zero is unsigned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Quantity {
    negative: bool,
    /// Decimal digits, most significant first, each 0..=9.
    digits: Vec<u8>,
    exponent: i64,
}

impl Quantity {
    /// Parses a quantity; `None` when `text` is not one (most strings are not).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (negative, rest) = match text.as_bytes().first()? {
            b'+' => (false, &text[1..]),
            b'-' => (true, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).map(|b| b - b'0').collect();
        let mut exponent = -i64::try_from(fraction.len()).ok()?;
        let (binary_power, decimal_exponent) = parse_suffix(suffix)?;
        for _ in 0..binary_power {
            multiply(&mut digits, 1024);
        }
        exponent = exponent.checked_add(decimal_exponent)?;
        Some(Self::normalised(negative, digits, exponent))
    }

    /// Parses a JSON scalar: a number, or a string holding a quantity.
    pub(crate) fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::Number(n) => Self::parse(&n.to_string()),
            serde_json::Value::String(s) => Self::parse(s),
            _ => None,
        }
    }

    /// The value in thousandths (Kubernetes' own resolution), rounded up like the
    /// apiserver rounds sub-milli values; `None` when it does not fit an `i128`.
    pub(crate) fn millis(&self) -> Option<i128> {
        let mut value: i128 = 0;
        for digit in &self.digits {
            value = value.checked_mul(10)?.checked_add(i128::from(*digit))?;
        }
        let shift = self.exponent.checked_add(3)?;
        if shift >= 0 {
            value = value.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
        } else {
            let divisor = 10i128.checked_pow(u32::try_from(-shift).ok()?)?;
            value = value / divisor + i128::from(value % divisor != 0);
        }
        Some(if self.negative { -value } else { value })
    }

    fn normalised(negative: bool, mut digits: Vec<u8>, mut exponent: i64) -> Self {
        let leading = digits.iter().take_while(|d| **d == 0).count();
        digits.drain(..leading);
        while digits.last() == Some(&0) {
            digits.pop();
            exponent += 1;
        }
        if digits.is_empty() {
            return Self { negative: false, digits, exponent: 0 };
        }
        Self { negative, digits, exponent }
    }
}

/// The suffix as (powers of 1024, power of ten); `None` for an unknown suffix.
fn parse_suffix(suffix: &str) -> Option<(u32, i64)> {
    let known = match suffix {
        "" => (0, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            return Some((0, exponent.parse().ok()?));
        }
    };
    Some(known)
}

/// Multiplies a big-endian decimal digit vector by a small factor, in place.
fn multiply(digits: &mut Vec<u8>, factor: u32) {
    let mut carry = 0u32;
    for digit in digits.iter_mut().rev() {
        let product = u32::from(*digit) * factor + carry;
        *digit = (product % 10) as u8;
        carry = product / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::Quantity;

    fn same(a: &str, b: &str) -> bool {
        match (Quantity::parse(a), Quantity::parse(b)) {
            (Some(a), Some(b)) => a == b,
            _ => panic!("{a:?} or {b:?} did not parse"),
        }
    }

    #[test]
    fn canonical_forms_equal_what_was_written() {
        for (written, canonical) in [
            ("0.5", "500m"),
            ("1024Mi", "1Gi"),
            ("1048576Ki", "1Gi"),
            ("2", "2"),
            ("2.0", "2"),
            ("+2", "2"),
            ("1000m", "1"),
            ("1e3", "1k"),
            ("1E3", "1k"),
            ("1e+3", "1k"),
            ("1.5e-3", "1500u"),
            ("0.001", "1m"),
            (".5", "500m"),
            ("5.", "5"),
            ("1000000000n", "1"),
            ("0.5Gi", "512Mi"),
            ("1024Ei", "1048576Pi"),
            ("12e6", "12M"),
            ("1000k", "1M"),
            ("4000T", "4P"),
            ("0.004E", "4P"),
            ("-0", "0"),
            ("0Gi", "0m"),
            ("-1.5k", "-1500"),
            ("007", "7"),
        ] {
            assert!(same(written, canonical), "{written} should equal {canonical}");
        }
    }

    #[test]
    fn different_values_differ() {
        for (a, b) in
            [("1", "2"), ("1Gi", "1G"), ("1Ki", "1k"), ("500m", "0.05"), ("-1", "1"), ("1E", "1Ei"), ("1e3", "1e-3")]
        {
            assert!(!same(a, b), "{a} should differ from {b}");
        }
    }

    #[test]
    fn non_quantities_are_rejected() {
        for text in [
            "",
            "+",
            "-",
            ".",
            "abc",
            "1x",
            "1Kb",
            "1e",
            "1e+",
            "1e1.5",
            "1..2",
            "1.2.3",
            " 1",
            "1 ",
            "1ki",
            "e3",
            "Gi",
            "true",
            "1e99999999999999999999",
        ] {
            assert_eq!(Quantity::parse(text), None, "{text:?} is not a quantity");
        }
    }

    #[test]
    fn json_numbers_and_strings_compare_by_value() {
        let int = serde_json::json!(2);
        let float = serde_json::json!(0.5);
        assert_eq!(Quantity::from_json(&int), Quantity::parse("2"));
        assert_eq!(Quantity::from_json(&float), Quantity::parse("500m"));
        assert_eq!(Quantity::from_json(&serde_json::json!("8Gi")), Quantity::parse("8192Mi"));
        assert_eq!(Quantity::from_json(&serde_json::json!(true)), None);
    }

    #[test]
    fn millis_are_exact_and_round_sub_milli_values_up() {
        for (text, millis) in [
            ("2", 2000),
            ("500m", 500),
            ("0.5", 500),
            ("1Gi", 1_073_741_824_000),
            ("1k", 1_000_000),
            ("1u", 1),
            ("-1", -1000),
        ] {
            assert_eq!(Quantity::parse(text).and_then(|q| q.millis()), Some(millis), "{text}");
        }
    }
}
