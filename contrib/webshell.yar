// PHP web shells that run what a request sends them: the README's `spyglass run yara` example.
// `spyglass run yara --rules "$(cat contrib/webshell.yar)" --paths /srv/www --name '\.php$' -t role=web`

rule php_eval_request : webshell php
{
    meta:
        description = "PHP that evaluates decoded request data"
    strings:
        $eval = /eval\s*\(\s*(base64_decode|gzinflate|str_rot13)\s*\(/ nocase
        $request = /\$_(REQUEST|POST|GET|COOKIE)\s*\[/
    condition:
        $eval and $request
}
