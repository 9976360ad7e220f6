//! `Option<f64>` in JSON the way Prometheus writes non-finite numbers:
//! `"NaN"`, `"+Inf"`, `"-Inf"` as strings, so a probe's NaN reads back as
//! NaN instead of `null` (no data).

pub(crate) mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(v) if v.is_nan() => s.serialize_str("NaN"),
            Some(v) if *v == f64::INFINITY => s.serialize_str("+Inf"),
            Some(v) if *v == f64::NEG_INFINITY => s.serialize_str("-Inf"),
            Some(v) => s.serialize_f64(*v),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None => Ok(None),
            Some(Repr::Number(v)) => Ok(Some(v)),
            Some(Repr::Text(t)) => match t.as_str() {
                "NaN" => Ok(Some(f64::NAN)),
                "+Inf" | "Inf" => Ok(Some(f64::INFINITY)),
                "-Inf" => Ok(Some(f64::NEG_INFINITY)),
                other => other.parse::<f64>().map(Some).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{other:?} is not a number (write a number, \"NaN\", \"+Inf\" or \"-Inf\")"
                    ))
                }),
            },
        }
    }
}
