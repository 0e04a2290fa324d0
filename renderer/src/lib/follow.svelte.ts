// A scrolled box that stays at its end while text streams into it, as a
// terminal does, until the reader scrolls up to read (and again once they
// scroll back down).
import type { Attachment } from 'svelte/attachments';

/** Slack (px) within which the box counts as at its end. */
const NEAR_END = 24;

/** Attach with `{@attach followEnd(() => what grows)}`: each change scrolls to the end unless the reader moved away. */
export function followEnd(content: () => unknown): Attachment<HTMLElement> {
  return (el) => {
    let pinned = true;
    // Where we last scrolled to. A scroll event arrives a frame later, when more text may have come:
    // only a move above that place is the reader's.
    let placed = 0;
    const onScroll = () => {
      if (el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_END) pinned = true;
      else if (el.scrollTop < placed - 1) pinned = false;
    };
    el.addEventListener('scroll', onScroll, { passive: true });
    // Once a frame at most: reading scrollHeight lays the text out, and tokens arrive faster than frames.
    let frame = 0;
    $effect(() => {
      content();
      if (pinned && !frame)
        frame = requestAnimationFrame(() => {
          frame = 0;
          el.scrollTop = el.scrollHeight;
          placed = el.scrollTop;
        });
    });
    return () => {
      cancelAnimationFrame(frame);
      el.removeEventListener('scroll', onScroll);
    };
  };
}
