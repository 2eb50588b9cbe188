[ -d /var/lib/tether-agent ] || install -d -m 0700 /var/lib/tether-agent
[ -d /var/log/tether ] || install -d -m 0750 /var/log/tether
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl enable tether-agent.service >/dev/null 2>&1 || :
    if [ -s /var/lib/tether-agent/registration.json ]; then systemctl restart tether-agent.service || :; fi
else
    command -v chkconfig >/dev/null 2>&1 && chkconfig --add tether-agent || :
    if [ -s /var/lib/tether-agent/registration.json ]; then /etc/init.d/tether-agent restart || :; fi
fi
