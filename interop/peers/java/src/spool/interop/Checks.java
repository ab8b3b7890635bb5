package spool.interop;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** Checks that fail with "expected vs seen", deadlines, and byte helpers shared by the scenarios. */
final class Checks {
    private Checks() {}

    /** A scenario check that did not hold; the message says what was expected and what was seen. */
    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String message) {
            super(message);
        }

        CheckFailed(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** Default limit of one client call or one wait for a condition. */
    static final Duration WAIT = Duration.ofSeconds(30);

    static void ok(String what) {
        System.out.println("ok: " + what);
    }

    static void check(boolean held, String what, Object expected, Object seen) {
        if (!held) {
            throw new CheckFailed(what + ": expected " + expected + ", seen " + seen);
        }
    }

    static void expectEq(String what, Object expected, Object seen) {
        check(Objects.equals(expected, seen), what, expected, seen);
    }

    static void expectBytes(String what, byte[] expected, byte[] seen) {
        check(Arrays.equals(expected, seen), what, show(expected), show(seen));
    }

    static byte[] utf8(String s) {
        return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
    }

    /** A byte array for messages: null, or the quoted UTF-8 text (these scenarios only send text). */
    static String show(byte[] b) {
        return b == null ? "null" : "\"" + new String(b, StandardCharsets.UTF_8) + "\"";
    }

    /** Waits for a client future with a deadline; a failure or timeout becomes a CheckFailed naming the call. */
    static <T> T await(String call, Future<T> future) {
        try {
            return future.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw new CheckFailed(call + " failed: " + e.getCause(), e.getCause());
        } catch (TimeoutException e) {
            throw new CheckFailed(call + " did not complete within " + WAIT.toSeconds() + " s");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CheckFailed(call + " interrupted");
        }
    }

    /** The cause a future failed with, or a CheckFailed if it succeeded or timed out. */
    static Throwable awaitFailure(String call, Future<?> future) {
        try {
            Object result = future.get(WAIT.toMillis(), TimeUnit.MILLISECONDS);
            throw new CheckFailed(call + ": expected an error, but it succeeded with " + result);
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (TimeoutException e) {
            throw new CheckFailed(call + " did not complete within " + WAIT.toSeconds() + " s");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CheckFailed(call + " interrupted");
        }
    }

    /** A point in time a wait must not pass. */
    static final class Deadline {
        private final long endNanos;
        private final Duration limit;

        Deadline(Duration limit) {
            this.limit = limit;
            this.endNanos = System.nanoTime() + limit.toNanos();
        }

        boolean passed() {
            return System.nanoTime() - endNanos >= 0;
        }

        /** Fails with "timed out waiting for WHAT; last seen: SEEN" once the deadline has passed. */
        void check(String what, Object lastSeen) {
            if (passed()) {
                throw new CheckFailed("timed out after " + limit.toSeconds() + " s waiting for " + what
                        + "; last seen: " + lastSeen);
            }
        }
    }

    /** Polls a condition (a client call) every 100 ms until it holds or the deadline passes. */
    interface Probe {
        /** Null or false: not yet; anything else: done. May throw: remembered as the last result. */
        Object probe() throws Exception;
    }

    static Object waitFor(String what, Duration limit, Probe probe) {
        Deadline deadline = new Deadline(limit);
        Object last = null;
        while (true) {
            try {
                Object result = probe.probe();
                if (result != null && !Boolean.FALSE.equals(result)) {
                    return result;
                }
                last = result;
            } catch (CheckFailed e) {
                last = e.getMessage();
            } catch (Exception e) {
                last = e.toString();
            }
            deadline.check(what, last);
            sleepQuietly(Duration.ofMillis(100));
        }
    }

    static void sleepQuietly(Duration d) {
        try {
            Thread.sleep(d.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new CheckFailed("interrupted");
        }
    }
}
