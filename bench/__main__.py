"""`make bench`: the validator benchmark, then the timer-tick benchmark. Ratios, not absolute times, matter."""

import sys

from bench import admission, breakdown, tick, validate

if __name__ == "__main__":
    print(
        "== validator: baseline, tokenizer floor and ours; default and realistic files; 2 cores and 1 core; "
        "memory near 512 MiB; cold starts ==",
        flush=True,
    )
    code = validate.main([])
    print("\n== validator: where its CPU goes, on the same two files ==", flush=True)
    code = breakdown.main([str(validate.chat_file(64)), str(validate.chat_file(64, system_prompts=3))]) or code
    print("\n== timer tick: 1,000 active runs, 50 ms added per call; drop-to-job for a 10 MB file ==", flush=True)
    code = tick.main([]) or code
    print("\n== admission: 200 drops at once within the resource's real limits (time scale 0.02) ==", flush=True)
    code = admission.main([]) or code
    sys.exit(code)
