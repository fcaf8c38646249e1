from django.urls import path

from media import avatars, views

urlpatterns = [
    path("v4/attachments/form/upload", views.UploadFormView.as_view()),
    # The embedded run's avatar CDN (media.avatars): clients post to the CDN's base URL itself.
    path("media", avatars.post_view),
    path("media/", avatars.post_view),
    path("media/<path:key>", avatars.avatar_view),
]
