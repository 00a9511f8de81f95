//! The OpenAPI schemas several dialects share: preference values and bodies that utoipa cannot
//! derive from a Rust type (any JSON but `null`, Open edX's values and patches, a client namespace).

use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema};
use utoipa::{PartialSchema, ToSchema};

/// A preference value: any JSON but `null`.
pub struct PreferenceJson;

impl PartialSchema for PreferenceJson {
    fn schema() -> RefOr<Schema> {
        let mut any = OneOfBuilder::new().description(Some("Any JSON value but null"));
        for kind in json_kinds(ObjectBuilder::new().schema_type(Type::String).build()) {
            any = any.item(kind);
        }
        any.into()
    }
}

/// One schema per JSON type but null, `string` as given: an object of anything, an array of
/// anything, a string, a number, a boolean. (Spelled out type by type, not as a list of types,
/// which code generators read as a union without the array's items.)
fn json_kinds(string: schema::Object) -> [Schema; 5] {
    [
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                .build(),
        ),
        Schema::Array(
            schema::ArrayBuilder::new()
                .items(RefOr::T(Schema::Object(
                    ObjectBuilder::new().schema_type(SchemaType::AnyValue).build(),
                )))
                .build(),
        ),
        Schema::Object(string),
        Schema::Object(ObjectBuilder::new().schema_type(Type::Number).build()),
        Schema::Object(ObjectBuilder::new().schema_type(Type::Boolean).build()),
    ]
}

impl ToSchema for PreferenceJson {}

/// An Open edX value as a client may send it: a string with something besides white space (it is
/// trimmed), or any other JSON value but `null`, stored as the string Python's `str()` gives for
/// it (`true` as `"True"`, `5` as `"5"`).
pub struct EdxValue;

impl PartialSchema for EdxValue {
    fn schema() -> RefOr<Schema> {
        let mut any = OneOfBuilder::new().description(Some(
            "A non-blank string (trimmed), or any other JSON value but null, stored as the string Python's \
             `str()` gives for it (`true` as `\"True\"`, `{\"a\": null}` as `\"{'a': None}\"`)",
        ));
        // Not blank, and no U+0000 (refused as Open edX refuses it).
        let string = ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^[^\x00]*\S[^\x00]*$"));
        for kind in json_kinds(string.build()) {
            any = any.item(kind);
        }
        any.into()
    }
}

impl ToSchema for EdxValue {}

/// An Open edX PATCH body: at least one member; each an [`EdxValue`], or `null` to delete. A key
/// has at most 255 characters, one of them from `[-_a-zA-Z0-9]` (it is trimmed).
pub struct EdxPatch;

impl PartialSchema for EdxPatch {
    fn schema() -> RefOr<Schema> {
        let member = OneOfBuilder::new()
            .item(EdxValue::schema())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build();
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .min_properties(Some(1))
            .property_names(Some(edx_key_schema()))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(member)))))
            .into()
    }
}

impl ToSchema for EdxPatch {}

/// A client namespace as a body: an object of at most 1,000 members (the default limit) whose
/// names are 1 to 255 bytes without control characters; `null` members are absent (PUT) or
/// deleted (PATCH).
pub struct NamespaceBody;

impl PartialSchema for NamespaceBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(prefs_domain::Limits::default().max_keys))
            .property_names(Some(key_schema()))
            .into()
    }
}

impl ToSchema for NamespaceBody {}

/// Characters no key holds: control characters.
const NOT_CONTROL: &str = r"[^\x00-\x1f\x7f-\x9f]";

/// A preference key: 1 to 255 characters without control characters (in a client namespace, at
/// most 255 bytes: longer is 413).
fn key_schema() -> schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some(format!("^{NOT_CONTROL}+$")))
        .build()
}

/// An Open edX key: as [`key_schema`], with one character from `[-_a-zA-Z0-9]`.
fn edx_key_schema() -> schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(255))
        .pattern(Some(format!("^{NOT_CONTROL}*[-_a-zA-Z0-9]{NOT_CONTROL}*$")))
        .build()
}
