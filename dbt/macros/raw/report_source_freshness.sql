{#- Run as on-run-end. dbt's own freshness output names a stale source but not how old it is;
    this logs, for every source `dbt source freshness` checked, its latest load, its age and the
    thresholds, so a stopped workflow says what was stale and since when. Other invocations
    have no source results and log nothing. -#}
{% macro report_source_freshness(results) %}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- for result in results
            if result.node.resource_type == 'source' and result.max_loaded_at is defined -%}
        {%- set node = result.node -%}
        {%- set limits = [] -%}
        {%- for name, after in [('warn', node.freshness.warn_after),
                                ('error', node.freshness.error_after)]
                if after is not none and after.count is not none -%}
            {%- do limits.append(name ~ ' after ' ~ after.count ~ ' ' ~ after.period
                ~ ('' if after.count == 1 else 's')) -%}
        {%- endfor -%}
        {%- if result.max_loaded_at.year == 1 -%}
            {#- dbt's stand-in for "no row": an empty table or only future events. -#}
            {%- set latest = 'no load at all (no event at or before now)' -%}
        {%- else -%}
            {%- set latest = 'latest load ' ~ result.max_loaded_at.strftime('%Y-%m-%d %H:%M:%S UTC')
                ~ ', ' ~ ((result.age / 3600) | round(1)) ~ ' hours before the check' -%}
        {%- endif -%}
        {%- set verdict = {'pass': 'fresh', 'warn': 'WARN stale', 'error': 'ERROR stale'}
            .get(result.status | string, result.status | string) -%}
        {{ log('Source freshness: ' ~ node.source_name ~ '.' ~ node.name ~ ' (' ~ node.relation_name
            ~ ') is ' ~ verdict ~ ': ' ~ latest ~ ' (' ~ (limits | join(', ')) ~ ').', info=True) }}
    {%- endfor -%}
    {{ return('') }}
{% endmacro %}
