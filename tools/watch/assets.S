/* The dashboard's page, its script and Chart.js, built into the binary
   (paths from CMake: TROUPE_DASHBOARD_HTML, ..._JS, TROUPE_CHART_JS). */
        .section .rodata
        .global troupe_dashboard_html
        .global troupe_dashboard_html_end
        .global troupe_dashboard_js
        .global troupe_dashboard_js_end
        .global troupe_chart_js
        .global troupe_chart_js_end
troupe_dashboard_html:
        .incbin TROUPE_DASHBOARD_HTML
troupe_dashboard_html_end:
troupe_dashboard_js:
        .incbin TROUPE_DASHBOARD_JS
troupe_dashboard_js_end:
troupe_chart_js:
        .incbin TROUPE_CHART_JS
troupe_chart_js_end:
        .section .note.GNU-stack,"",%progbits
