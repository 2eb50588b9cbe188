getent passwd tether >/dev/null || useradd --system --user-group --home-dir /var/lib/tether --shell /sbin/nologin tether
[ -d /var/lib/tether ] || install -d -m 0700 -o tether -g tether /var/lib/tether
[ -d /var/log/tether ] || install -d -m 0750 /var/log/tether
chgrp tether /var/log/tether && chmod g+w /var/log/tether
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl enable tether.service >/dev/null 2>&1 || :
    systemctl restart tether.service || :
else
    command -v chkconfig >/dev/null 2>&1 && chkconfig --add tether || :
    /etc/init.d/tether restart || :
fi
