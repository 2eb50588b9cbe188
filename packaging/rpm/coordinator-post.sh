getent passwd tether >/dev/null || useradd --system --user-group --home-dir /var/lib/tether --shell /sbin/nologin tether
[ -d /var/lib/tether ] || install -d -m 0700 -o tether -g tether /var/lib/tether
install -d -m 0700 -o tether -g tether /var/log/tether-coordinator
# Older packages logged in /var/log/tether, shared with the agent (group
# tether, writable): the coordinator's logs move to its own directory and
# the shared one goes back to root.
if [ -d /var/log/tether ] && [ ! -L /var/log/tether ]; then
    for f in /var/log/tether/coordinator.log /var/log/tether/coordinator.log.* /var/log/tether/coordinator.stdout.log; do
        if [ -f "$f" ] && [ ! -L "$f" ] && [ ! -e "/var/log/tether-coordinator/${f##*/}" ]; then
            mv "$f" /var/log/tether-coordinator/
            chown tether:tether "/var/log/tether-coordinator/${f##*/}"
        fi
    done
    if [ "$(stat -c %G /var/log/tether)" = tether ]; then
        chgrp root /var/log/tether
        chmod 0700 /var/log/tether
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl enable tether.service >/dev/null 2>&1 || :
    systemctl restart tether.service || :
else
    command -v chkconfig >/dev/null 2>&1 && chkconfig --add tether || :
    /etc/init.d/tether restart || :
fi
