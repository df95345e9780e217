/**
 * The functions a read-only query may call: an allowlist, so that a function DuckDB adds in an upgrade is
 * refused until someone has read what it does. A function is allowed when it computes a value from its
 * arguments (or from the clock, or a random draw) and does nothing else: it reads no setting, variable,
 * secret, catalog entry, file or log, takes no SQL text, and changes nothing.
 *
 * The names are DuckDB's (`select distinct function_name, function_type from duckdb_functions()`) for the
 * DuckDB in package.json with the extensions the read-only engine loads (those built in: core_functions,
 * icu, json, parquet); operators DuckDB parses as calls are among them (`+`, `||`, `~~` for LIKE,
 * `!__postfix` for `5!`). allowed-functions.test.ts fails when DuckDB has a scalar, aggregate or macro in
 * neither list, so an upgrade makes someone classify the new ones here. Table functions are a list of their
 * own (three), and pragmas and table macros cannot be called from a SELECT's expressions.
 */
import { foldedName } from '../catalog/identifier.ts';

/** Table functions a read-only query may call: they compute rows and touch no file or setting. */
export const ALLOWED_TABLE_FUNCTIONS: ReadonlySet<string> = new Set(['range', 'generate_series', 'unnest']);

/** The names of a template literal, separated by white space: lists to read as a table. */
function words(text: TemplateStringsArray): string[] {
  return text.join('').trim().split(/\s+/);
}

/** Functions a read-only query may call, by kind. */
const ALLOWED_BY_KIND = {
  // `5!` is `!__postfix`, LIKE `~~`, ILIKE `~~*`, GLOB `~~~`, `^@` starts_with; `->>` reads JSON.
  operators: words`
    + - * / // % ** ^ @ !__postfix ~ & | << >> || ~~ !~~ ~~* !~~* ~~~ ^@ @> <@ && <-> <=> ->> add
    subtract multiply divide mod xor
  `,
  math: words`
    abs acos acosh asin asinh atan atan2 atanh bit_count cbrt ceil ceiling cos cosh cot degrees
    equi_width_bins even exp factorial fdiv floor fmod gamma gcd greatest greatest_common_divisor isfinite
    isinf isnan lcm least least_common_multiple lgamma ln log log10 log2 nextafter pi pow power radians
    random round round_even roundbankers sign signbit sin sinh sqrt tan tanh trunc
  `,
  text: words`
    ascii bar bit_length char_length character_length chr concat concat_ws contains damerau_levenshtein
    editdist3 ends_with format formatReadableDecimalSize formatReadableSize format_bytes hamming
    icu_sort_key ilike_escape instr jaccard jaro_similarity jaro_winkler_similarity lcase left
    left_grapheme len length length_grapheme levenshtein like_escape lower lpad ltrim mismatches
    nfc_normalize not_ilike_escape not_like_escape ord parse_dirname parse_dirpath parse_filename
    parse_formatted_bytes parse_path pg_size_pretty position prefix printf repeat replace reverse right
    right_grapheme rpad rtrim split split_part starts_with str_split string_split string_to_array
    strip_accents strlen strpos substr substring substring_grapheme suffix to_base translate trim ucase
    unicode upper url_decode url_encode
  `,
  regex: words`
    regexp_escape regexp_extract regexp_extract_all regexp_full_match regexp_matches regexp_replace
    regexp_split_to_array regexp_split_to_table str_split_regex string_split_regex
  `,
  binary: words`
    base64 bin bit_position bitstring decode encode from_base64 from_binary from_hex get_bit hex
    octet_length set_bit to_base64 to_binary to_hex unbin unhex
  `,
  hashing: words`
    hash md5 md5_number md5_number_lower md5_number_upper sha1 sha256 uuid gen_random_uuid uuidv4 uuidv7
    uuid_extract_timestamp uuid_extract_version
  `,
  // The clock keywords (`current_timestamp`, `localtime`…) are these calls once bound.
  dateTime: words`
    age ago century current_date current_localtime current_localtimestamp date_add date_diff date_part
    date_sub date_trunc datediff datepart datesub datetrunc day dayname dayofmonth dayofweek dayofyear
    days_in_month decade epoch epoch_ms epoch_ns epoch_us era get_current_time get_current_timestamp
    hour isodow isoyear julian last_day make_date make_time make_timestamp make_timestamp_ms
    make_timestamp_ns make_timestamptz microsecond millennium millisecond minute month monthname
    nanosecond normalized_interval now quarter second strftime strptime time_bucket
    timetz_byte_comparable timezone timezone_hour timezone_minute to_centuries to_days to_decades
    to_hours to_microseconds to_millennia to_milliseconds to_minutes to_months to_quarters to_seconds
    to_timestamp to_weeks to_years today transaction_timestamp try_strptime week weekday weekofyear year
    yearweek
  `,
  // list_aggr and its aliases call an aggregate named by a string: every aggregate is allowed (below).
  lists: words`
    aggregate apply array_aggr array_aggregate array_append array_apply array_cat array_concat
    array_contains array_cosine_distance array_cosine_similarity array_cross_product array_distance
    array_distinct array_dot_product array_extract array_filter array_grade_up array_has array_has_all
    array_has_any array_indexof array_inner_product array_intersect array_length
    array_negative_dot_product array_negative_inner_product array_pop_back array_pop_front
    array_position array_prepend array_push_back array_push_front array_reduce array_resize
    array_reverse array_reverse_sort array_select array_slice array_sort array_to_string
    array_to_string_comma_default array_transform array_unique array_value array_where array_zip filter
    flatten generate_series generate_subscripts grade_up list_aggr list_aggregate list_any_value
    list_append list_apply list_approx_count_distinct list_avg list_bit_and list_bit_or list_bit_xor
    list_bool_and list_bool_or list_cat list_concat list_contains list_cosine_distance
    list_cosine_similarity list_count list_distance list_distinct list_dot_product list_element
    list_entropy list_extract list_filter list_first list_grade_up list_has list_has_all list_has_any
    list_histogram list_indexof list_inner_product list_intersect list_kurtosis list_kurtosis_pop
    list_last list_mad list_max list_median list_min list_mode list_negative_dot_product
    list_negative_inner_product list_pack list_position list_prepend list_product list_reduce
    list_resize list_reverse list_reverse_sort list_select list_sem list_skewness list_slice list_sort
    list_stddev_pop list_stddev_samp list_string_agg list_sum list_transform list_unique list_value
    list_var_pop list_var_samp list_where list_zip range reduce unpivot_list
  `,
  structsMapsUnions: words`
    cardinality element_at map map_concat map_contains map_contains_entry map_contains_value map_entries
    map_extract map_extract_value map_from_entries map_keys map_values remap_struct row struct_concat
    struct_contains struct_extract struct_extract_at struct_has struct_indexof struct_insert struct_keys
    struct_pack struct_position struct_update struct_values union_extract union_tag union_value
  `,
  json: words`
    array_to_json from_json from_json_strict json json_array json_array_length json_contains json_exists
    json_extract json_extract_path json_extract_path_text json_extract_string json_group_array
    json_group_object json_group_structure json_keys json_merge_patch json_object json_pretty json_quote
    json_structure json_transform json_transform_strict json_type json_valid json_value row_to_json
    to_json
  `,
  variantsAndGeometry: words`
    variant_extract variant_normalize variant_typeof st_asbinary st_astext st_aswkb st_aswkt st_crs
    st_geomfromwkb st_intersects_extent
  `,
  typesAndEnums: words`
    alias can_cast_implicitly cast_to_type enum_code enum_first enum_last enum_range enum_range_boundary
    get_type pg_typeof replace_type typeof
  `,
  // `error` fails the query with the text given (json_group_object calls it).
  conditional: words`constant_or_null create_sort_key error is_histogram_other_bin nullif switch`,
  // The SQL keywords `current_user`, `session_user`, `user`, `current_role`, `current_schema`,
  // `current_catalog` are column references DuckDB binds to these calls when no column has the name, so no
  // check of calls can refuse them; they answer constants ('duckdb', 'main', 'memory').
  sessionConstants: words`
    current_catalog current_database current_role current_schema current_user session_user user
  `,
  aggregates: words`
    any_value approx_count_distinct approx_quantile approx_top_k arbitrary arg_max arg_max_null
    arg_max_nulls_last arg_min arg_min_null arg_min_nulls_last argmax argmin array_agg avg bit_and
    bit_or bit_xor bitstring_agg bool_and bool_or corr count count_if count_star countif covar_pop
    covar_samp entropy favg first fsum geomean geometric_mean group_concat histogram histogram_exact
    kahan_sum kurtosis kurtosis_pop last list listagg mad max max_by mean median min min_by mode product
    quantile quantile_cont quantile_disc regr_avgx regr_avgy regr_count regr_intercept regr_r2
    regr_slope regr_sxx regr_sxy regr_syy reservoir_quantile sem skewness stddev stddev_pop stddev_samp
    string_agg sum sum_no_overflow sumkahan var_pop var_samp variance wavg weighted_avg
  `,
  windows: words`
    cume_dist dense_rank fill first_value lag last_value lead nth_value ntile percent_rank rank
    rank_dense row_number
  `,
  // Not in DuckDB's catalog: its binder turns a call of these names into an UNNEST.
  binderForms: words`unnest unlist`,
};

/**
 * Functions a read-only query may not call, by why. Any function not allowed is refused; these are listed
 * so that each of DuckDB's functions is classified on purpose (allowed-functions.test.ts).
 */
const DENIED_BY_REASON = {
  // The engine's settings and variables.
  settings: words`current_setting getvariable`,
  // Take SQL text: `json_serialize_plan` binds and plans it — any table, any file of the warehouse —
  // and the plan shows their schema and, as the optimizer prunes by the files' statistics, their values.
  sqlText: words`json_serialize_sql json_serialize_plan json_deserialize_sql`,
  // Read the catalog, the session or the engine: look a type or a CRS up in the catalog or the loaded
  // extensions (`make_type`, `st_setcrs`), or answer the search path, ids, the query's own text, the version.
  catalogAndSession: words`
    current_schemas in_search_path current_query current_query_id current_connection_id
    current_transaction_id txid_current version make_type st_setcrs
  `,
  // Macros that run table functions in their bodies: `pg_get_viewdef` answers every view's SQL (each table's
  // columns and files), `pg_get_constraintdef`, `format_type`, `get_block_size` the catalog's.
  catalogMacros: words`pg_get_viewdef pg_get_constraintdef format_type get_block_size`,
  // PostgreSQL's catalog functions, as DuckDB imitates them: privileges, visibility, the server, OIDs. Most
  // answer a constant; none is about the data.
  postgresCatalog: words`
    col_description obj_description shobj_description format_pg_type map_to_pg_oid
    has_any_column_privilege has_column_privilege has_database_privilege
    has_foreign_data_wrapper_privilege has_function_privilege has_language_privilege
    has_schema_privilege has_sequence_privilege has_server_privilege has_table_privilege
    has_tablespace_privilege inet_client_addr inet_client_port inet_server_addr inet_server_port
    pg_collation_is_visible pg_conversion_is_visible pg_function_is_visible pg_opclass_is_visible
    pg_operator_is_visible pg_opfamily_is_visible pg_table_is_visible pg_ts_config_is_visible
    pg_ts_dict_is_visible pg_ts_parser_is_visible pg_ts_template_is_visible pg_type_is_visible
    pg_conf_load_time pg_postmaster_start_time pg_get_expr pg_has_role pg_is_other_temp_schema
    pg_my_temp_schema
  `,
  // Effects beyond the answer: the log, the random seed, sequences, a worker held asleep.
  sideEffects: words`write_log setseed nextval currval sleep_ms pg_sleep`,
  // DuckDB's internals: what it knows of an expression's values before reading them (`stats`: the files'
  // minimum and maximum, rows a filter drops included), how a vector is stored, aggregate states, and bytes
  // only its own Parquet and log code writes.
  engineInternals: words`
    stats vector_type combine finalize variant_bytes_to_variant variant_to_parquet_variant
    parse_duckdb_log_message
  `,
};

/**
 * Families of functions denied by the start of their names: the optimizer's compression of keys
 * (`__internal_compress_string_ubigint`…), and the ICU collations, one a language (`icu_collate_de`), which
 * `name COLLATE de` uses without calling them.
 */
const DENIED_PREFIXES: readonly string[] = ['__internal_', 'icu_collate_'];

/** Functions a read-only query may call, by name as DuckDB folds it (lower-case). */
export const ALLOWED_FUNCTIONS: ReadonlySet<string> = new Set(
  Object.values(ALLOWED_BY_KIND).flat().map(foldedName),
);

/** Functions not in the catalog that DuckDB's binder knows by name (they need no classification). */
export const BINDER_FUNCTIONS: ReadonlySet<string> = new Set(ALLOWED_BY_KIND.binderForms);

/** Functions refused on purpose, by name (any function not allowed is refused): see DENIED_BY_REASON. */
export const DENIED_FUNCTIONS: ReadonlySet<string> = new Set(
  Object.values(DENIED_BY_REASON).flat().map(foldedName),
);

/** Whether `name` (folded) is denied by name or by family. */
export function isDeniedFunction(name: string): boolean {
  return DENIED_FUNCTIONS.has(name) || DENIED_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** The hint of a refused function: what is allowed, and where to ask for more. */
export const ALLOWED_FUNCTIONS_HINT =
  'queries may call the functions that compute values: operators, math, text, regular expressions, dates ' +
  'and times, lists, structs and maps, JSON extraction, hashing, aggregates, window functions; ' +
  'docs/models.md#queries says how to ask for another';
